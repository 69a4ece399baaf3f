"""The sandbox world: anvil (chain), contracts and the local venue."""
