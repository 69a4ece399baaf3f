"""The feed: Polymarket's market channel -> local order books -> the bus."""
