import pytest

from config.loader import load


@pytest.fixture
def sandbox_config(tmp_path):
    """The default config with state under a temp dir."""
    import msgspec

    cfg = load()
    return msgspec.structs.replace(cfg, nonce=msgspec.structs.replace(cfg.nonce, state_dir=str(tmp_path / "state")))
