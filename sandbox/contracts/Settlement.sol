// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

interface IERC20 {
    function approve(address spender, uint256 amount) external returns (bool);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IConditionalTokens {
    function safeTransferFrom(address from, address to, uint256 id, uint256 value, bytes calldata data) external;
    function setApprovalForAll(address operator, bool approved) external;
    function splitPosition(address collateral, bytes32 parent, bytes32 conditionId, uint256[] calldata partition,
        uint256 amount) external;
    function mergePositions(address collateral, bytes32 parent, bytes32 conditionId, uint256[] calldata partition,
        uint256 amount) external;
}

interface INegRiskAdapter {
    function wcol() external view returns (address);
    function splitPosition(bytes32 conditionId, uint256 amount) external;
    function mergePositions(bytes32 conditionId, uint256 amount) external;
}

/// @title Settlement: the sandbox venue's on-chain settlement (the role of Polymarket's CTF exchange).
/// @notice The venue matches orders off chain; its operator, always the maker, settles each fill
///         here, atomically, with one of ctf-exchange's three match types:
///         - settle (COMPLEMENTARY): tokens one way, collateral the other, between trader and operator;
///         - settleMint (MINT): both sides buy complementary tokens; their collateral splits new sets;
///         - settleMerge (MERGE): both sides sell complementary tokens; the sets merge into collateral.
///         A fill id settles at most once across all three, so the venue can retry a settlement
///         without paying twice. Both parties approved this contract beforehand.
///         One instance is the standard exchange (positions collateralised by pUSD, split on the
///         CTF), another the neg-risk exchange (WCOL positions, split through the NegRiskAdapter).
///         The contract holds funds only inside a call: it accepts ERC-1155 tokens only while it
///         settles, so a token sent to it by mistake is rejected.
///         Placed with anvil_setCode, which runs no constructor: hence `initialize`.
contract Settlement {
    // The first six slots keep the layout of the COMPLEMENTARY-only version (code is replaced in place).
    bool public initialized;
    address public admin;
    IERC20 public collateral;
    IConditionalTokens public ctf;
    mapping(address => bool) public isOperator;
    mapping(bytes32 => bool) public settled;
    INegRiskAdapter public negRiskAdapter; // zero on the standard exchange
    address public positionCollateral; // the collateral of the positions it splits and merges: pUSD or WCOL
    bool private transient _settling;

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
    event SettledMint(
        bytes32 indexed fillId,
        address indexed trader,
        bytes32 indexed conditionId,
        uint256 traderToken,
        uint256 operatorToken,
        uint256 shares,
        uint256 traderCost,
        uint256 fee
    );
    event SettledMerge(
        bytes32 indexed fillId,
        address indexed trader,
        bytes32 indexed conditionId,
        uint256 traderToken,
        uint256 operatorToken,
        uint256 shares,
        uint256 traderProceeds,
        uint256 fee
    );

    /// @param negRiskAdapter_ the NegRiskAdapter (already initialized) for the neg-risk exchange, zero otherwise
    function initialize(address admin_, address collateral_, address ctf_, address negRiskAdapter_) external {
        require(!initialized, "already initialized");
        require(admin_ != address(0) && collateral_ != address(0) && ctf_ != address(0), "zero address");
        initialized = true;
        admin = admin_;
        collateral = IERC20(collateral_);
        ctf = IConditionalTokens(ctf_);
        if (negRiskAdapter_ == address(0)) {
            positionCollateral = collateral_;
            require(collateral.approve(ctf_, type(uint256).max), "approve failed");
        } else {
            negRiskAdapter = INegRiskAdapter(negRiskAdapter_);
            positionCollateral = negRiskAdapter.wcol();
            require(positionCollateral != address(0), "adapter not initialized");
            require(collateral.approve(negRiskAdapter_, type(uint256).max), "approve failed");
            ctf.setApprovalForAll(negRiskAdapter_, true); // the adapter pulls the sets it merges
        }
    }

    function addOperator(address operator) external {
        require(msg.sender == admin, "not admin");
        isOperator[operator] = true;
        emit OperatorAdded(operator);
    }

    /// COMPLEMENTARY.
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

    /// MINT: the trader buys `shares` of traderToken for `traderCost + fee`; the operator's bid for
    /// the complement pays `shares - traderCost` and the operator keeps the fee. The two payments
    /// split `shares` new complete sets of the binary condition.
    /// @param traderCost shares * the trader's price, in collateral units (at most `shares`)
    function settleMint(
        bytes32 fillId,
        address trader,
        bytes32 conditionId,
        uint256 traderToken,
        uint256 operatorToken,
        uint256 shares,
        uint256 traderCost,
        uint256 fee
    ) external {
        _begin(fillId, shares);
        require(traderCost <= shares, "cost exceeds shares");
        _requireComplements(conditionId, traderToken, operatorToken);
        require(collateral.transferFrom(trader, address(this), traderCost + fee), "collateral transfer failed");
        // The operator's net: pays its side of the sets, receives the fee (one transfer, either way).
        uint256 operatorCost = shares - traderCost;
        if (operatorCost > fee) {
            require(collateral.transferFrom(msg.sender, address(this), operatorCost - fee), "collateral transfer failed");
        } else if (fee > operatorCost) {
            require(collateral.transfer(msg.sender, fee - operatorCost), "collateral transfer failed");
        }
        if (address(negRiskAdapter) == address(0)) {
            ctf.splitPosition(address(collateral), bytes32(0), conditionId, _partition(), shares);
        } else {
            negRiskAdapter.splitPosition(conditionId, shares);
        }
        ctf.safeTransferFrom(address(this), trader, traderToken, shares, "");
        ctf.safeTransferFrom(address(this), msg.sender, operatorToken, shares, "");
        _settling = false;
        emit SettledMint(fillId, trader, conditionId, traderToken, operatorToken, shares, traderCost, fee);
    }

    /// MERGE: the trader sells `shares` of traderToken for `traderProceeds - fee`; the operator's
    /// ask for the complement delivers `shares` of operatorToken and receives the rest of the
    /// merged collateral, `shares - traderProceeds + fee`.
    /// @param traderProceeds shares * the trader's price, in collateral units (at most `shares`)
    function settleMerge(
        bytes32 fillId,
        address trader,
        bytes32 conditionId,
        uint256 traderToken,
        uint256 operatorToken,
        uint256 shares,
        uint256 traderProceeds,
        uint256 fee
    ) external {
        _begin(fillId, shares);
        require(traderProceeds <= shares, "proceeds exceed shares");
        require(fee <= traderProceeds, "fee exceeds proceeds");
        _requireComplements(conditionId, traderToken, operatorToken);
        ctf.safeTransferFrom(trader, address(this), traderToken, shares, "");
        ctf.safeTransferFrom(msg.sender, address(this), operatorToken, shares, "");
        if (address(negRiskAdapter) == address(0)) {
            ctf.mergePositions(address(collateral), bytes32(0), conditionId, _partition(), shares);
        } else {
            negRiskAdapter.mergePositions(conditionId, shares);
        }
        require(collateral.transfer(trader, traderProceeds - fee), "collateral transfer failed");
        require(collateral.transfer(msg.sender, shares - traderProceeds + fee), "collateral transfer failed");
        _settling = false;
        emit SettledMerge(fillId, trader, conditionId, traderToken, operatorToken, shares, traderProceeds, fee);
    }

    // ------------------------------------------------------------------ ERC-1155 receiver

    function onERC1155Received(address, address, uint256, uint256, bytes calldata) external view returns (bytes4) {
        _requireSettling();
        return this.onERC1155Received.selector;
    }

    function onERC1155BatchReceived(address, address, uint256[] calldata, uint256[] calldata, bytes calldata)
        external view returns (bytes4)
    {
        _requireSettling();
        return this.onERC1155BatchReceived.selector;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == 0x4e2312e0; // ERC-165, ERC-1155 receiver
    }

    // ------------------------------------------------------------------ internal

    function _begin(bytes32 fillId, uint256 shares) private {
        require(isOperator[msg.sender], "not operator");
        require(!_settling, "reentrant settlement");
        require(!settled[fillId], "fill already settled");
        require(shares > 0, "zero shares");
        settled[fillId] = true; // before the external calls: no re-entrant double settlement
        _settling = true;
    }

    function _requireSettling() private view {
        require(_settling && msg.sender == address(ctf), "settlement takes no deposits");
    }

    /// The two tokens must be the condition's YES and NO (either way round): the sets split or
    /// merged are of exactly these positions.
    function _requireComplements(bytes32 conditionId, uint256 traderToken, uint256 operatorToken) private view {
        uint256 yes = _positionId(conditionId, 1);
        uint256 no = _positionId(conditionId, 2);
        require((traderToken == yes && operatorToken == no) || (traderToken == no && operatorToken == yes),
            "tokens are not the condition's complements");
    }

    function _positionId(bytes32 conditionId, uint256 indexSet) private view returns (uint256) {
        bytes32 collectionId = keccak256(abi.encodePacked(bytes32(0), conditionId, indexSet));
        return uint256(keccak256(abi.encodePacked(positionCollateral, collectionId)));
    }

    function _partition() private pure returns (uint256[] memory partition) {
        partition = new uint256[](2);
        partition[0] = 1;
        partition[1] = 2;
    }
}
