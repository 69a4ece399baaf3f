"""The sandbox's Solidity contracts (pUSD, a CTF-compatible ERC-1155, the settlement)
and their offline build with solcjs: `sandbox.contracts.build` (kept out of this
package's namespace so `python -m sandbox.contracts.build` runs it cleanly)."""
