"""The nonce authority: the only process that hands out the wallet's nonces."""
