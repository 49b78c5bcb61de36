from tests.support import Device, Http, RunningServer


async def test_live_push(server: RunningServer, http: Http) -> None:
    ann = await http.account("ann")
    bob = await http.account("bob")
    a = await Device(server.url).connect(ann.token)
    b = await Device(server.url).connect(bob.token)
    await a.wait_synced()
    await b.wait_synced()
    answer = await a.send(bob.username, "hi", "c-1")
    assert answer["ok"], answer
    await b.wait_for(lambda: len(b.messages()) == 1)
    print(b.events, a.events)
    await a.disconnect()
    await b.disconnect()
