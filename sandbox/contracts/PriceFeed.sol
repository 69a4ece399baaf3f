// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title PriceFeed: the sandbox's POL / USD price, shaped like a Chainlink AggregatorV3.
/// @notice The executor reads Chainlink's POL / USD feed on Polygon (latestRoundData,
///         decimals) to price gas in USDC; the sandbox places this contract at the same
///         address with anvil_setCode. The venue's operator sets the answer at bootstrap
///         (sandbox.venue.pol_usdc_price). It reports every block: `updatedAt` is the
///         block's time, so the sandbox's feed is never stale (staleness is the executor's
///         unit tests' business).
contract PriceFeed {
    error OnlyAdmin();
    error AlreadyInitialized();

    uint8 public constant decimals = 8;
    string public constant description = "POL / USD (sandbox)";

    bool public initialized;
    address public admin;
    int256 private _answer;
    uint80 private _round;

    function initialize(address admin_) external {
        if (initialized) revert AlreadyInitialized();
        initialized = true;
        admin = admin_;
    }

    function setAnswer(int256 answer) external {
        if (msg.sender != admin) revert OnlyAdmin();
        _answer = answer;
        _round += 1;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return (_round, _answer, block.timestamp, block.timestamp, _round);
    }
}
