"""Neg-risk events from a listing: only a complete, non-augmented event with a known
convert fee has a NO basket, its NO tokens in question order."""

import pytest

from actors.domain.enums import SetKind
from actors.domain.listing import Market, parse_market
from actors.domain.money import MICRO
from actors.router import events as ev
from actors.router.arbitrage import BasketParams

pytestmark = pytest.mark.unit

EVENT = "0x" + "ab" * 31 + "00"


def question(i: int, event: str = EVENT) -> str:
    return event[:-2] + f"{i:02x}"


def outcome(i: int, *, tags=(), active=True, index=None, outcomes=("Yes", "No"), fee_bps=100, min_size=5,
            event=EVENT) -> Market:
    return Market(f"0xc{i}", f"outcome {i}", (f"y{i}", f"n{i}"), outcomes, active, fee_rate_bps=fee_bps,
                  min_order_size=min_size * MICRO, neg_risk=True, neg_risk_market_id=event,
                  neg_risk_request_id=question(i if index is None else index, event), tags=tuple(tags))


def params(markets, fees=None, wanted=None):
    grouped, _ = ev.group_events(markets)
    wanted = {m.condition_id for m in markets} if wanted is None else wanted
    return ev.basket_params(grouped[EVENT], wanted, {EVENT: 0} if fees is None else fees, 10_000)


def test_a_complete_event_has_its_no_basket_in_question_order():
    listing = [outcome(2), outcome(0, fee_bps=200), outcome(1, min_size=10)]  # listed out of order
    p = params(listing, fees={EVENT: 25})
    assert p == BasketParams(event=EVENT, token_ids=("n0", "n1", "n2"), outcomes=3,
                             fee_rates_ppm=(20_000, 10_000, 10_000), convert_fee_bips=25,
                             min_order_size=10 * MICRO, size_step=10_000)


def test_the_no_token_is_found_by_its_label_not_its_position():
    listing = [outcome(0, outcomes=("No", "Yes")), outcome(1)]
    assert params(listing).token_ids == ("y0", "n1")


@pytest.mark.parametrize("tag", ["Placeholder", "Other", "other"])
def test_an_augmented_event_is_never_a_basket(tag):
    listing = [outcome(0), outcome(1), outcome(2, tags=[tag])]
    assert params(listing) == ev.AUGMENTED
    # without the augmented outcomes the rest is not complete either
    assert params([*listing[:2], outcome(3, index=3)]) == ev.INCOMPLETE_EVENT


@pytest.mark.parametrize("listing", [
    [outcome(0), outcome(2)],  # question 1 missing
    [outcome(1), outcome(2)],  # question 0 missing
    [outcome(0), outcome(1, index=0)],  # question 0 twice
    [outcome(0)],  # one outcome: nothing to convert
    [outcome(0), outcome(1, active=False)],  # a closed (resolved) market
    [outcome(0), outcome(1, outcomes=("A", "B"))],  # not a YES / NO pair
])
def test_an_incomplete_event_is_never_a_basket(listing):
    assert params(listing) == ev.INCOMPLETE_EVENT


def test_an_event_not_wholly_selected_or_without_its_fee_is_not_a_basket():
    listing = [outcome(0), outcome(1)]
    assert params(listing, wanted={"0xc0"}) == ev.INCOMPLETE_EVENT
    assert params(listing, fees={}) == ev.FEE_UNKNOWN


def test_question_ids_that_do_not_belong_to_the_market_id_give_no_index():
    assert outcome(0).question_index == 0 and outcome(7).question_index == 7
    foreign = Market("0xc", "q", ("y", "n"), ("Yes", "No"), True, neg_risk=True, neg_risk_market_id=EVENT,
                     neg_risk_request_id="0x" + "cd" * 32)
    assert foreign.question_index is None
    assert Market("0xc", "q", ("y", "n"), ("Yes", "No"), True, neg_risk=True).question_index is None


def test_the_listing_parses_event_ids_and_tags():
    m = parse_market({"condition_id": "0xc", "neg_risk": True, "neg_risk_market_id": EVENT,
                      "neg_risk_request_id": question(3), "tags": ["Placeholder"],
                      "tokens": [{"token_id": "1", "outcome": "Yes"}, {"token_id": "2", "outcome": "No"}]})
    assert (m.neg_risk_market_id, m.question_index, m.augmented) == (EVENT, 3, True)
    plain = parse_market({"condition_id": "0xd", "tags": None, "tokens": []})
    assert (plain.neg_risk_market_id, plain.tags, plain.augmented) == ("", (), False)


def test_neg_risk_markets_without_an_event_id_are_counted_apart():
    grouped, orphans = ev.group_events([outcome(0), Market("0xz", "q", ("a", "b"), ("Yes", "No"), True,
                                                           neg_risk=True)])
    assert list(grouped) == [EVENT] and orphans == 1


# -- the YES basket: the same completeness, no convert fee -------------------------


def yes_params(markets, wanted=None):
    grouped, _ = ev.group_events(markets)
    wanted = {m.condition_id for m in markets} if wanted is None else wanted
    return ev.yes_basket_params(grouped[EVENT], wanted, 10_000)


def test_a_complete_event_has_its_yes_basket_in_question_order():
    listing = [outcome(2), outcome(0, fee_bps=200), outcome(1, min_size=10)]
    assert yes_params(listing) == BasketParams(
        event=EVENT, token_ids=("y0", "y1", "y2"), outcomes=3, fee_rates_ppm=(20_000, 10_000, 10_000),
        convert_fee_bips=0, min_order_size=10 * MICRO, size_step=10_000, kind=SetKind.YES_BASKET)
    assert params(listing).kind == SetKind.NO_BASKET


def test_the_yes_token_is_found_by_its_label_not_its_position():
    listing = [outcome(0, outcomes=("No", "Yes")), outcome(1)]
    assert yes_params(listing).token_ids == ("n0", "y1")
    assert ev.yes_token(outcome(0, outcomes=("A", "B"))) is None


@pytest.mark.parametrize("tag", ["Placeholder", "Other", "other"])
def test_an_augmented_event_is_never_a_yes_basket(tag):
    listing = [outcome(0), outcome(1), outcome(2, tags=[tag])]
    assert yes_params(listing) == ev.AUGMENTED
    assert yes_params([*listing[:2], outcome(3, index=3)]) == ev.INCOMPLETE_EVENT


@pytest.mark.parametrize("listing", [
    [outcome(0), outcome(2)],  # question 1 missing: it may be the winner
    [outcome(1), outcome(2)],
    [outcome(0), outcome(1, index=0)],
    [outcome(0)],
    [outcome(0), outcome(1, active=False)],
    [outcome(0), outcome(1, outcomes=("A", "B"))],
])
def test_an_incomplete_event_is_never_a_yes_basket(listing):
    assert yes_params(listing) == ev.INCOMPLETE_EVENT


def test_an_event_not_wholly_selected_is_not_a_yes_basket():
    assert yes_params([outcome(0), outcome(1)], wanted={"0xc0"}) == ev.INCOMPLETE_EVENT


def test_an_unknown_convert_fee_does_not_hold_back_the_yes_basket():
    listing = [outcome(0), outcome(1)]
    assert params(listing, fees={}) == ev.FEE_UNKNOWN
    yes = yes_params(listing)
    assert isinstance(yes, BasketParams) and yes.token_ids == ("y0", "y1") and yes.convert_fee_bips == 0
