"""The router: order books in, complete-set arbitrage signals out."""
