"""The corpus of the `search` scenario: users, conversations and message bodies,
generated from a seed and bulk-loaded into a database at migration 0005.

A million messages through the server would take longer than the scenario itself,
so rows are written the way the writer writes them (bench/seed.py does the same for
one conversation): a read `messages` row with the recipient's stream cursor, one
`new_message` event in each side's stream, and every user's `stream_seq` at the
head of its stream. Every user is in `partners` conversations with its neighbours
(user u talks with u +- 1 .. partners/2), each message in one of them, at random.

The bodies are meant to look like chat to a search index, not like English:
3-25 words drawn with a Zipf law from a few thousand generated words (the first
ones are as common as "the"), 5% with accented Latin words (café, naïve,
Ærøskøbing), 5% Japanese or Chinese sentences without spaces, built from ~200
common words; and each user has a rare word of its own (`planted_word`) in
`planted_per_user` of its messages, the one query whose exact answer is known.
While the rows are made, a few bodies of every user who will search are kept
(`Samples`), for the queries to come from text those users really have.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.accounts import PASSWORD

STATUS_READ = 2
EVENT_NEW_MESSAGE = 1
CHUNK = 50_000
# Rows of one SQLite transaction while seeding (synchronous=OFF: the seed only).
SQLITE_COMMIT_ROWS = 200_000
SPAN = timedelta(days=365)

PLAIN, ACCENTED, CJK = "plain", "accented", "cjk"
ACCENTED_SHARE, CJK_SHARE = 0.05, 0.05
DELETED_SHARE, EDITED_SHARE = 0.005, 0.01
SAMPLES_PER_KIND = 16
VOCABULARY_SIZE = 3_000
ZIPF_EXPONENT = 1.0

# No q, x, y, z or j in generated words: a planted word starts with x, so none of
# the vocabulary contains one, and no generated word is one.
CONSONANTS = "bcdfghklmnprstvw"
VOWELS = "aeiou"

ACCENTED_WORDS = (
    "café", "naïve", "Ærøskøbing", "crème", "brûlée", "façade", "jalapeño", "piñata",
    "résumé", "déjà", "Malmö", "Zürich", "São", "Kraków", "Dvořák", "smörgåsbord",
    "fiancée", "über", "Ångström", "Göteborg", "Málaga", "Curaçao", "Québec", "Besançon",
    "Nîmes", "Würzburg", "Düsseldorf", "Öland", "Tromsø", "Bjørn", "Søren", "Łódź",
    "Gdańsk", "Škoda", "Čapek", "coöperate", "touché", "soufflé", "entrée", "exposé",
    "doppelgänger", "Reykjavík", "Þórshöfn", "Åland", "señor", "mañana", "garçon",
    "rosé", "pâté", "tête", "forêt", "Genève", "Köln", "Lübeck", "Ålesund", "Hernández",
)  # fmt: skip

JAPANESE_WORDS = (
    "東京", "大阪", "京都", "会社", "電車", "今日", "明日", "昨日", "天気", "友達",
    "先生", "学校", "時間", "仕事", "映画", "音楽", "料理", "写真", "旅行", "日本",
    "家族", "部屋", "電話", "会議", "予定", "週末", "夕方", "朝食", "昼食", "夕食",
    "病院", "銀行", "公園", "買物", "新聞", "雑誌", "番組", "試験", "宿題", "大学",
    "趣味", "散歩", "運動", "野球", "温泉", "季節", "台風", "地震", "空港", "駅前",
    "切符", "地図", "荷物", "手紙", "返事", "連絡", "約束", "準備", "説明", "質問",
    "お茶", "ご飯", "すし", "ラーメン", "コーヒー", "ビール", "ケーキ", "パン", "カメラ",
    "テレビ", "パソコン", "スマホ", "メール", "ゲーム", "ホテル", "面白い", "楽しい",
    "美味しい", "忙しい", "大丈夫", "本当", "一緒", "全部", "少し", "沢山", "毎日",
    "今週", "来週", "先週", "誕生日", "お土産", "お願い", "新幹線", "図書館", "水曜日",
)  # fmt: skip
JAPANESE_PARTICLES = ("は", "が", "を", "に", "で", "と", "の", "も", "へ", "から")

CHINESE_WORDS = (
    "我们", "你们", "他们", "今天", "明天", "昨天", "北京", "上海", "广州", "深圳",
    "中国", "朋友", "工作", "学习", "电影", "音乐", "吃饭", "喜欢", "时间", "问题",
    "手机", "电脑", "公司", "老师", "学生", "医院", "银行", "超市", "咖啡", "下午",
    "晚上", "早上", "周末", "天气", "下雨", "出差", "开会", "项目", "经理", "同事",
    "客户", "合同", "价格", "市场", "地铁", "飞机", "火车", "机场", "酒店", "餐厅",
    "米饭", "面条", "饺子", "啤酒", "茶叶", "水果", "苹果", "西瓜", "生日", "礼物",
    "照片", "视频", "微信", "消息", "电话", "地址", "名字", "孩子", "父母", "妈妈",
    "爸爸", "房子", "城市", "旅游", "假期", "春节", "中秋", "加班", "休息", "跑步",
    "游泳", "篮球", "足球", "比赛", "新闻", "历史", "文化", "考试", "作业", "图书馆",
    "动物园", "没问题", "谢谢", "可以", "已经", "一起", "马上", "非常", "应该", "觉得",
)  # fmt: skip
CHINESE_PARTICLES = ("的", "了", "在", "是", "和", "去", "也", "都")
# Full-width sentence ends, written as escapes: they look like ASCII punctuation.
CJK_ENDS = ("\u3002", "\uff01", "\uff1f", "")


def fold(text: str) -> str:
    """Lower case without accents, as a query is matched (`e` finds `é`): the marks
    that Unicode decomposition splits off are dropped; letters such as ø or æ, which
    do not decompose, stay as they are."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def queryable_accented() -> tuple[str, ...]:
    """The accented words that fold to plain ASCII: typed without accents, they must
    be found under any reading of "accents ignored"."""
    return tuple(w for w in ACCENTED_WORDS if fold(w).isascii() and fold(w) != w.lower())


def username(user: int) -> str:
    return f"srch{user:05d}"


def planted_word(user: int) -> str:
    """A word only `user`'s messages hold: "x" and three syllables, one per user
    (7919 is prime to 80**3, so the mapping is one to one). All have the same
    length, so none is inside another."""
    code = (user * 7919) % 80**3
    parts = ["x"]
    for _ in range(3):
        code, digit = divmod(code, 80)
        consonant, vowel = divmod(digit, len(VOWELS))
        parts.append(CONSONANTS[consonant] + VOWELS[vowel])
    return "".join(parts)


def vocabulary(rng: random.Random, size: int = VOCABULARY_SIZE) -> list[str]:
    """`size` distinct pronounceable words of 2-4 syllables, most common first."""
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = rng.choice((2, 2, 3, 3, 3, 4))
        word = "".join(
            rng.choice(CONSONANTS)
            + rng.choice(VOWELS)
            + (rng.choice("lnrst") * (rng.random() < 0.3))
            for _ in range(syllables)
        )
        words.setdefault(word, None)
    return list(words)


@dataclass(frozen=True)
class Body:
    kind: str
    words: tuple[str, ...]  # as written (accents kept), without punctuation
    text: str


class Bodies:
    """Message bodies of the three kinds, from one random generator."""

    def __init__(self, rng: random.Random, vocab: list[str]) -> None:
        self.rng = rng
        self.vocab = vocab
        weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(vocab))]
        self.cum = list(itertools.accumulate(weights))

    def make(self) -> Body:
        roll = self.rng.random()
        if roll < CJK_SHARE:
            return self.cjk()
        words = self.rng.choices(self.vocab, cum_weights=self.cum, k=self.rng.randint(3, 25))
        kind = PLAIN
        if roll < CJK_SHARE + ACCENTED_SHARE:
            kind = ACCENTED
            for _ in range(self.rng.choice((1, 1, 2))):
                words.insert(self.rng.randrange(len(words) + 1), self.rng.choice(ACCENTED_WORDS))
        return Body(kind, tuple(words), self.latin_text(words))

    def latin_text(self, words: list[str]) -> str:
        text = " ".join(words)
        if self.rng.random() < 0.5:
            text = text[:1].upper() + text[1:]
        return text + self.rng.choice(("", "", ".", "?", "!"))

    def cjk(self) -> Body:
        """A Japanese or Chinese sentence without spaces; it starts with a two-character
        word (what a two-character query must find at the start of a word)."""
        japanese = self.rng.random() < 0.5
        words, particles = (
            (JAPANESE_WORDS, JAPANESE_PARTICLES) if japanese else (CHINESE_WORDS, CHINESE_PARTICLES)
        )
        first = self.rng.choice([w for w in words[:40] if len(w) == 2])
        chosen = [first, *self.rng.choices(words, k=self.rng.randint(2, 7))]
        parts: list[str] = []
        for i, word in enumerate(chosen):
            parts.append(word)
            if i < len(chosen) - 1 and self.rng.random() < 0.6:
                parts.append(self.rng.choice(particles))
        return Body(CJK, tuple(chosen), "".join(parts) + self.rng.choice(CJK_ENDS))


@dataclass(frozen=True)
class Sample:
    """A body one user has, and the other party of its conversation."""

    peer: int
    body: Body


@dataclass
class Samples:
    """Reservoirs of a searching user's bodies, by kind."""

    seen: dict[str, int] = field(default_factory=dict)
    kept: dict[str, list[Sample]] = field(default_factory=dict)

    def offer(self, rng: random.Random, sample: Sample) -> None:
        kind = sample.body.kind
        seen = self.seen.get(kind, 0) + 1
        self.seen[kind] = seen
        kept = self.kept.setdefault(kind, [])
        if len(kept) < SAMPLES_PER_KIND:
            kept.append(sample)
        else:
            slot = rng.randrange(seen)
            if slot < SAMPLES_PER_KIND:
                kept[slot] = sample


@dataclass(frozen=True)
class CorpusPlan:
    messages: int
    users: int
    partners: int = 10
    planted_per_user: int = 3
    searchers: int = 50
    seed: int = 26

    def searching_users(self) -> list[int]:
        """The users who will log in and search, spread over all of them."""
        count = min(self.searchers, self.users)
        return [i * self.users // count for i in range(count)]


@dataclass
class Corpus:
    """What the queries need to know about the rows that were written."""

    plan: CorpusPlan
    vocab: list[str]
    samples: dict[int, Samples]
    seqs: list[int]
    seconds: float = 0.0


USER_COLUMNS = ("id", "username", "password_hash", "created_at", "stream_seq", "read_receipts")
MESSAGE_COLUMNS = (
    "id",
    "sender_id",
    "recipient_id",
    "body",
    "client_id",
    "sent_at",
    "status",
    "delivered_at",
    "read_at",
    "recipient_seq",
    "edited_at",
    "deleted_at",
)
EVENT_COLUMNS = ("user_id", "seq", "kind", "message_id", "payload")

Row = tuple[Any, ...]


def _pairs(plan: CorpusPlan) -> list[tuple[int, int]]:
    if plan.users <= plan.partners:
        raise ValueError(f"{plan.users} users cannot each have {plan.partners} partners")
    half = plan.partners // 2
    return [(u, (u + k) % plan.users) for u in range(plan.users) for k in range(1, half + 1)]


def generate(plan: CorpusPlan) -> tuple[Corpus, Iterator[tuple[list[Row], list[Row]]]]:
    """The corpus and an iterator of (message rows, stream-event rows) chunks in id
    order; the corpus's samples and seqs are complete once the iterator is spent."""
    rng = random.Random(plan.seed)
    vocab = vocabulary(rng)
    corpus = Corpus(
        plan,
        vocab,
        {u: Samples() for u in plan.searching_users()},
        [0] * plan.users,
    )
    return corpus, _chunks(plan, corpus, rng)


def _chunks(
    plan: CorpusPlan, corpus: Corpus, rng: random.Random
) -> Iterator[tuple[list[Row], list[Row]]]:
    bodies = Bodies(rng, corpus.vocab)
    pairs = _pairs(plan)
    half = plan.partners // 2
    planted_total = plan.users * plan.planted_per_user
    if planted_total > plan.messages:
        raise ValueError(f"{plan.messages} messages cannot hold {planted_total} planted words")
    planted = dict(
        zip(
            rng.sample(range(plan.messages), planted_total),
            itertools.chain.from_iterable(
                itertools.repeat(u, plan.planted_per_user) for u in range(plan.users)
            ),
            strict=True,
        )
    )
    samples, seqs = corpus.samples, corpus.seqs
    start = datetime.now(UTC) - SPAN
    step = SPAN / plan.messages
    messages: list[Row] = []
    events: list[Row] = []
    for i in range(plan.messages):
        owner = planted.get(i)
        if owner is not None:
            peer = (owner + rng.choice((1, -1)) * rng.randint(1, half)) % plan.users
            sender, recipient = owner, peer
        else:
            a, b = pairs[rng.randrange(len(pairs))]
            sender, recipient = (a, b) if rng.random() < 0.5 else (b, a)
        body = bodies.make()
        text = body.text
        if owner is not None:
            # Appended, so that the reservoirs below never see it: the rare-word
            # query counts on exactly `planted_per_user` hits.
            text = f"{text} {planted_word(owner)}"
        message_id = i + 1
        seqs[sender] += 1
        seqs[recipient] += 1
        at = start + step * i
        roll = rng.random() if owner is None else 1.0
        deleted = at + timedelta(minutes=1) if roll < DELETED_SHARE else None
        edited = (
            at + timedelta(minutes=2)
            if deleted is None and roll < DELETED_SHARE + EDITED_SHARE
            else None
        )
        messages.append(
            (
                message_id,
                sender + 1,
                recipient + 1,
                "" if deleted else text,
                str(message_id),
                at,
                STATUS_READ,
                at,
                at,
                seqs[recipient],
                edited,
                deleted,
            )
        )
        events.append((sender + 1, seqs[sender], EVENT_NEW_MESSAGE, message_id, None))
        events.append((recipient + 1, seqs[recipient], EVENT_NEW_MESSAGE, message_id, None))
        if deleted is None and owner is None:
            for user, other in ((sender, recipient), (recipient, sender)):
                reservoir = samples.get(user)
                if reservoir is not None:
                    reservoir.offer(rng, Sample(other, body))
        if len(messages) >= CHUNK:
            yield messages, events
            messages, events = [], []
    if messages:
        yield messages, events


def _password_hash() -> str:
    """One argon2 hash at the server's default cost (so a login does not rehash),
    shared by every account: made once, not a thousand times."""
    from messenger.auth import password_hasher
    from messenger.config import Settings

    defaults = Settings()
    return password_hasher(defaults.argon2_time_cost, defaults.argon2_memory_kib).hash(PASSWORD)


def _user_rows(plan: CorpusPlan, created: datetime) -> list[Row]:
    hashed = _password_hash()
    return [(u + 1, username(u), hashed, created, 0, True) for u in range(plan.users)]


def seed(database_url: str, plan: CorpusPlan) -> Corpus:
    """Write the plan's users and messages into an empty database at revision 0005."""
    t0 = time.monotonic()
    if database_url.startswith("sqlite"):
        corpus = _seed_sqlite(database_url.split("///", 1)[1], plan)
    else:
        corpus = asyncio.run(_seed_postgres(database_url.replace("+asyncpg", ""), plan))
    corpus.seconds = time.monotonic() - t0
    return corpus


def _sqlite_time(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME text format; the server stores naive UTC there.
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _seed_sqlite(path: str, plan: CorpusPlan) -> Corpus:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # The seed only: a crash here loses nothing but the benchmark's time.
        db.execute("PRAGMA journal_mode=MEMORY")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        created = datetime.now(UTC) - SPAN - timedelta(days=30)
        db.execute("BEGIN")
        db.executemany(
            _insert("users", USER_COLUMNS),
            [(*r[:3], _sqlite_time(r[3]), *r[4:]) for r in _user_rows(plan, created)],
        )
        corpus, chunks = generate(plan)
        message_sql = _insert("messages", MESSAGE_COLUMNS)
        event_sql = _insert("stream_events", EVENT_COLUMNS)
        pending = 0
        for messages, events in chunks:
            db.executemany(
                message_sql,
                [
                    (*m[:5], _sqlite_time(m[5]), m[6], _sqlite_time(m[7]), _sqlite_time(m[8]),
                     m[9], _sqlite_time(m[10]), _sqlite_time(m[11]))
                    for m in messages
                ],
            )  # fmt: skip
            db.executemany(event_sql, events)
            pending += len(messages)
            if pending >= SQLITE_COMMIT_ROWS:
                db.execute("COMMIT")
                db.execute("BEGIN")
                pending = 0
        db.executemany(
            "UPDATE users SET stream_seq = ? WHERE id = ?",
            [(seq, u + 1) for u, seq in enumerate(corpus.seqs)],
        )
        db.execute("COMMIT")
        db.execute("ANALYZE")
        # What a server leaves behind: the upgrade then runs as it would in place.
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    return corpus


async def _seed_postgres(dsn: str, plan: CorpusPlan) -> Corpus:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        created = datetime.now(UTC) - SPAN - timedelta(days=30)
        corpus, chunks = generate(plan)
        async with conn.transaction():
            await conn.copy_records_to_table(
                "users", records=_user_rows(plan, created), columns=list(USER_COLUMNS)
            )
            for messages, events in chunks:
                await conn.copy_records_to_table(
                    "messages", records=messages, columns=list(MESSAGE_COLUMNS)
                )
                await conn.copy_records_to_table(
                    "stream_events", records=events, columns=list(EVENT_COLUMNS)
                )
            await conn.executemany(
                "UPDATE users SET stream_seq = $1 WHERE id = $2",
                [(seq, u + 1) for u, seq in enumerate(corpus.seqs)],
            )
            for table in ("users", "messages"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return corpus
