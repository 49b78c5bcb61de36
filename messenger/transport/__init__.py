"""The edges: Socket.IO and HTTP."""
