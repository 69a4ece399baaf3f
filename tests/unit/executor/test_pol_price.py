"""Gas priced in USDC: the POL / USD feed's answer while it is fresh and sane, else the
static executor.pol_usdc_price; the stats say which."""

from decimal import Decimal

import msgspec
import pytest

from actors.domain.enums import TxStatus
from actors.domain.fees import gas_fee
from actors.executor.pol_price import PolPrice
from actors.runtime.clock import TestClock
from tests.unit.executor.test_tx_sender import World, signal

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

FEED = "0xAB594600376Ec9fD91F8e885dADF0CE036862dE0"


class Feed:
    def __init__(self, clock):
        self.clock, self.answer, self.decimals, self.error = clock, 25_120_000, 8, None
        self.updated = int(clock.time())

    async def read(self):
        if self.error:
            raise self.error
        return self.answer, self.decimals, self.updated


def priced(sandbox_config, feed=FEED, **executor):
    cfg = msgspec.structs.replace(sandbox_config, executor=msgspec.structs.replace(
        sandbox_config.executor, pol_price_feed=feed, pol_usdc_price=Decimal("0.50"), **executor))
    clock = TestClock()
    f = Feed(clock)
    return PolPrice(f.read, clock, lambda: cfg), f, clock


async def test_a_fresh_answer_prices_gas_and_a_stale_one_falls_back_to_the_static_price(sandbox_config):
    price, feed, clock = priced(sandbox_config, pol_price_max_age_seconds=60)
    assert (price.per_pol(), price.source()) == (500_000, "static")  # nothing read yet
    await price.refresh()
    assert (price.per_pol(), price.source()) == (251_200, "feed")  # 0.2512 USDC, 8 decimals
    clock.advance(61)
    assert (price.per_pol(), price.source()) == (500_000, "static")
    assert price.get_stats()["feed_usdc"] == "0.251200" and price.get_stats()["age_seconds"] == 61.0


async def test_a_failed_read_keeps_the_last_fresh_answer_and_is_counted(sandbox_config):
    price, feed, clock = priced(sandbox_config)
    await price.refresh()
    feed.error = ConnectionError("node down")
    await price.refresh()
    assert price.per_pol() == 251_200 and price.errors == 1 and "node down" in price.get_stats()["last_error"]


@pytest.mark.parametrize("answer,decimals", [(0, 8), (-5, 8), (2_000 * 10**8, 8), (1, 80)])
async def test_an_answer_that_is_no_pol_price_is_refused(sandbox_config, answer, decimals):
    price, feed, _ = priced(sandbox_config)
    feed.answer, feed.decimals = answer, decimals
    await price.refresh()
    assert price.source() == "static" and price.rejected == 1


async def test_without_a_feed_the_static_price_serves(sandbox_config):
    price, feed, _ = priced(sandbox_config, feed=None)
    await price.refresh()
    assert price.source() == "static" and price.reads == 0


async def test_the_executors_gas_is_booked_at_the_price_in_use(tmp_path, sandbox_config):
    world = World(tmp_path, sandbox_config)
    price, feed, _ = priced(sandbox_config)
    price.clock = world.clock
    feed.updated = int(world.clock.time())
    await price.refresh()
    world.onchain._pol_price = price.per_pol
    r = await world.sender.execute(signal(world.clock))
    assert r.status is TxStatus.SUCCESS
    assert r.gas_cost == gas_fee(120_000, 60 * 10**9, 251_200) != gas_fee(120_000, 60 * 10**9, 500_000)  # at 0.2512
