import json, pathlib, tempfile, sys
from bench import servers, accounts
from bench.driver import drive
from bench.loadgen import LoadSpec
if __name__ == "__main__":
    wd = pathlib.Path(tempfile.mkdtemp())
    srv = servers.start_relay(wd)
    with servers.running(srv):
        peers = accounts.pairs_of(accounts.relay_peers(int(sys.argv[1])))
        spec = LoadSpec(url=srv.url, dialect="relay", duration=6, warmup=1, window=int(sys.argv[2]))
        r = drive(srv, spec, peers, workers=int(sys.argv[3]))
        print(json.dumps(r))
