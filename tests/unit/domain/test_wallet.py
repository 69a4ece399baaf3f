import pytest

from actors.domain.wallet import Wallet, WalletError, dev_account, load_wallet
from config.loader import load

pytestmark = pytest.mark.unit


def test_wallet_never_shows_its_key():
    account = dev_account(1)
    w = Wallet(account)
    key_hex = account.key.hex()
    assert w.address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert key_hex not in repr(w) and key_hex not in str(w)
    assert not hasattr(w, "__dict__")


def test_env_wallet_requires_the_variable(monkeypatch):
    import msgspec

    from config.schema import Chain, EnvWallet

    cfg = load()
    cfg = msgspec.structs.replace(cfg, chain=Chain(wallet=EnvWallet(env_var="PX_TEST_KEY")))
    monkeypatch.delenv("PX_TEST_KEY", raising=False)
    with pytest.raises(WalletError, match="PX_TEST_KEY"):
        load_wallet(cfg)
    monkeypatch.setenv("PX_TEST_KEY", "not-a-key")
    with pytest.raises(WalletError) as err:
        load_wallet(cfg)
    assert "not-a-key" not in str(err.value)
    monkeypatch.setenv("PX_TEST_KEY", dev_account(2).key.hex())
    assert load_wallet(cfg).address == dev_account(2).address
