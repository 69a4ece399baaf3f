"""The sandbox's Solidity contracts (pUSD, a CTF-compatible ERC-1155, the Settlement
exchange, Polymarket's NegRiskAdapter and its WCOL), their ids computed without a chain
(`sandbox.contracts.ids`), and their offline build with solcjs: `sandbox.contracts.build`
(kept out of this package's namespace so `python -m sandbox.contracts.build` runs it cleanly)."""
