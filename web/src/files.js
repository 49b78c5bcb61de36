// The files of messages still in the outbox, in IndexedDB: the outbox itself is JSON in
// localStorage, which holds no Blob (and only a few MB), so a file chosen offline or cut
// off by a reload waits here until its message is stored. Keys are
// "<user>:<client_id>:<n>", so one user's files are a key range. Every call is
// best-effort: without IndexedDB (disabled, full) the file still lives in memory for
// this page, it just does not survive a reload.

const DB_NAME = "messenger-files";
const STORE = "files";

let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("IndexedDB is blocked"));
    }).catch((err) => {
      opening = null; // a later call may try again
      throw err;
    });
  }
  return opening;
}

/** Runs `work(store)` in one transaction; resolves with its request's result. */
async function run(mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request ? request.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

const userRange = (user) => IDBKeyRange.bound(`${user}:`, `${user}:\uffff`);

export const files = {
  key: (user, clientId, n) => `${user}:${clientId}:${n}`,

  /** Keeps `blob` under `key`; false when it could not (it stays in memory only). */
  async put(key, blob) {
    try {
      await run("readwrite", (store) => store.put(blob, key));
      return true;
    } catch {
      return false;
    }
  },

  /** The Blob under `key`, or null. */
  async get(key) {
    try {
      const value = await run("readonly", (store) => store.get(key));
      return value instanceof Blob ? value : null;
    } catch {
      return null;
    }
  },

  async remove(keys) {
    if (!keys.length) return;
    try {
      await run("readwrite", (store) => {
        for (const key of keys) store.delete(key);
      });
    } catch {
      // Left behind: `keepOnly` removes it at the next start.
    }
  },

  /**
   * Removes the user's files that `wanted(key)` does not claim (a crash between
   * steps). Asked after reading the keys, so a file queued meanwhile is claimed.
   */
  async keepOnly(user, wanted) {
    try {
      const keys = await run("readonly", (store) => store.getAllKeys(userRange(user)));
      await this.remove(keys.filter((key) => !wanted(key)));
    } catch {
      // Nothing to tidy, or no IndexedDB.
    }
  },

  /** Logging out forgets the user's waiting files with the rest of their local state. */
  async forget(user) {
    try {
      await run("readwrite", (store) => store.delete(userRange(user)));
    } catch {
      // No IndexedDB: nothing was kept.
    }
  },
};
