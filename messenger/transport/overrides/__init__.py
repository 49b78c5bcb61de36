"""Corrections to python-socketio and python-engineio, fenced here.

The libraries are used through their public API everywhere else; what they get
wrong against the Engine.IO v4 / Socket.IO v5 protocol (as the official protocol
test suites and the reference Node server define it) is corrected in these
subclasses, each method with a comment naming the library behaviour it replaces.
They lean on private names of the libraries, so the versions they were checked
against are pinned in pyproject.toml's ranges and listed below.

| class | module | corrects |
| --- | --- | --- |
| `ConformantServer` | socketio_server | python-socketio's `AsyncServer` |
| `ConformantEngineServer` | engine_server | python-engineio's `AsyncServer` |
| `ConformantSocket` | engine_socket | python-engineio's `AsyncSocket` |
"""
