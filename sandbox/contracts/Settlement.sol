// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

interface IERC20 {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IERC1155 {
    function safeTransferFrom(address from, address to, uint256 id, uint256 value, bytes calldata data) external;
}

/// @title Settlement: the sandbox venue's on-chain settlement (the role of Polymarket's CTF exchange).
/// @notice The venue matches orders off chain; an operator settles each fill here, atomically:
///         outcome tokens one way, collateral the other, or nothing at all. A fill id settles
///         at most once, so the venue can retry a settlement without paying twice.
///         The contract never holds funds: it moves them directly between the trader and the
///         calling operator, both of whom approved this contract beforehand (an ERC-1155 sent
///         to it by mistake is rejected, as it implements no receiver hook).
///         Placed with anvil_setCode, which runs no constructor: hence `initialize`.
contract Settlement {
    bool public initialized;
    address public admin;
    IERC20 public collateral;
    IERC1155 public ctf;
    mapping(address => bool) public isOperator;
    mapping(bytes32 => bool) public settled;

    event OperatorAdded(address indexed operator);
    event Settled(
        bytes32 indexed fillId,
        address indexed trader,
        uint256 tokenId,
        bool traderBuys,
        uint256 shares,
        uint256 cost,
        uint256 fee
    );

    function initialize(address admin_, address collateral_, address ctf_) external {
        require(!initialized, "already initialized");
        require(admin_ != address(0) && collateral_ != address(0) && ctf_ != address(0), "zero address");
        initialized = true;
        admin = admin_;
        collateral = IERC20(collateral_);
        ctf = IERC1155(ctf_);
    }

    function addOperator(address operator) external {
        require(msg.sender == admin, "not admin");
        isOperator[operator] = true;
        emit OperatorAdded(operator);
    }

    /// @param fillId    the venue's unique id of the fill; a second settle with it reverts
    /// @param traderBuys true: trader pays `cost + fee`, receives `shares`;
    ///                   false: trader delivers `shares`, receives `cost - fee`
    /// @param cost      shares * price, in collateral units (1e-6)
    /// @param fee       the taker fee, in collateral units, kept by the operator
    function settle(
        bytes32 fillId,
        address trader,
        uint256 tokenId,
        bool traderBuys,
        uint256 shares,
        uint256 cost,
        uint256 fee
    ) external {
        require(isOperator[msg.sender], "not operator");
        require(!settled[fillId], "fill already settled");
        require(shares > 0, "zero shares");
        settled[fillId] = true; // before the external calls: no re-entrant double settlement
        if (traderBuys) {
            require(collateral.transferFrom(trader, msg.sender, cost + fee), "collateral transfer failed");
            ctf.safeTransferFrom(msg.sender, trader, tokenId, shares, "");
        } else {
            require(fee <= cost, "fee exceeds cost");
            ctf.safeTransferFrom(trader, msg.sender, tokenId, shares, "");
            require(collateral.transferFrom(msg.sender, trader, cost - fee), "collateral transfer failed");
        }
        emit Settled(fillId, trader, tokenId, traderBuys, shares, cost, fee);
    }
}
