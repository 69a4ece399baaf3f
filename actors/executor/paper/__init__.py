"""Paper trading: the executor's ports (venue, chain, nonces) played against the live
books the feed publishes and a chain kept in SQLite (docs/paper-trading.md).

The pipeline is the live one, unchanged: only what it talks to is on paper."""
