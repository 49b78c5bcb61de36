"""messenger: a persistent store-and-forward private messenger server on Socket.IO."""

__version__ = "0.1.0"
