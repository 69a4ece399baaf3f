// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

interface IERC20 {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IWrappedCollateral {
    function initialize(address underlying) external;
    function approve(address spender, uint256 amount) external returns (bool);
    function balanceOf(address owner) external view returns (uint256);
    function unwrap(address to, uint256 amount) external;
    function mint(uint256 amount) external;
    function release(address to, uint256 amount) external;
}

interface IConditionalTokens {
    function prepareCondition(address oracle, bytes32 questionId, uint256 outcomeSlotCount) external;
    function reportPayouts(bytes32 questionId, uint256[] calldata payouts) external;
    function getOutcomeSlotCount(bytes32 conditionId) external view returns (uint256);
    function splitPosition(address collateral, bytes32 parent, bytes32 conditionId, uint256[] calldata partition,
        uint256 amount) external;
    function mergePositions(address collateral, bytes32 parent, bytes32 conditionId, uint256[] calldata partition,
        uint256 amount) external;
    function redeemPositions(address collateral, bytes32 parent, bytes32 conditionId, uint256[] calldata indexSets)
        external;
    function safeBatchTransferFrom(address from, address to, uint256[] calldata ids, uint256[] calldata values,
        bytes calldata data) external;
    function balanceOf(address owner, uint256 id) external view returns (uint256);
    function balanceOfBatch(address[] calldata owners, uint256[] calldata ids) external view returns (uint256[] memory);
}

/// @title NegRiskAdapter: Polymarket's neg-risk adapter for the sandbox.
/// @notice The functions, ids, events and errors of Polymarket's NegRiskAdapter
///         (neg-risk-ctf-adapter): a market groups binary questions of which at most one
///         resolves YES; each question is a 2-slot CTF condition whose oracle is this adapter,
///         collateralised by WCOL; a set of NO positions converts into collateral plus the
///         YES positions of the other questions. Sandbox differences, on purpose:
///         - set up by `initialize` (placed with anvil_setCode, no constructor), which also
///           takes ownership of the WCOL placed at its fixed address;
///         - only admins prepare markets (so the oracle, part of the market id, is an admin);
///         - it accepts ERC-1155 tokens only from transfers it makes itself (it never holds any
///           after a call, so a token sent to it directly would be lost);
///         - splitPosition pays the pUSD straight into WCOL's reserve (the real one takes it,
///           then wraps it): the same balances, one transfer less;
///         - no packed getMarketData; each of its fields has its getter, as in the real one.
contract NegRiskAdapter {
    error InvalidIndexSet();
    error LengthMismatch();
    error UnexpectedCollateralToken();
    error NoConvertiblePositions();
    error IndexOutOfBounds();
    error OnlyOracle();
    error MarketNotPrepared();
    error MarketAlreadyPrepared();
    error MarketAlreadyDetermined();
    error FeeBipsOutOfBounds();
    error NotAdmin();

    event MarketPrepared(bytes32 indexed marketId, address indexed oracle, uint256 feeBips, bytes data);
    event QuestionPrepared(bytes32 indexed marketId, bytes32 indexed questionId, uint256 index, bytes data);
    event OutcomeReported(bytes32 indexed marketId, bytes32 indexed questionId, bool outcome);
    event PositionSplit(address indexed stakeholder, bytes32 indexed conditionId, uint256 amount);
    event PositionsMerge(address indexed stakeholder, bytes32 indexed conditionId, uint256 amount);
    event PositionsConverted(
        address indexed stakeholder, bytes32 indexed marketId, uint256 indexed indexSet, uint256 amount
    );
    event PayoutRedemption(address indexed redeemer, bytes32 indexed conditionId, uint256[] amounts, uint256 payout);
    event NewAdmin(address indexed admin, address indexed newAdminAddress);

    struct MarketData {
        address oracle;
        uint16 feeBips;
        uint8 questionCount;
        bool determined;
        uint8 result; // the question that resolved YES, once determined
    }

    uint256 public constant FEE_DENOMINATOR = 10_000;
    address public constant NO_TOKEN_BURN_ADDRESS = address(bytes20(bytes32(keccak256("NO_TOKEN_BURN_ADDRESS"))));
    // A question id is its market id plus its index in the last byte.
    bytes32 private constant MARKET_MASK = bytes32(type(uint256).max << 8);
    uint256 private constant MAX_QUESTIONS = 255; // the count must fit a byte

    bool public initialized;
    IConditionalTokens public ctf;
    IERC20 public col;
    IWrappedCollateral public wcol;
    address public vault; // receives convertPositions' fees
    mapping(address => uint256) public admins; // 1 = admin, as the real Auth module
    mapping(bytes32 => MarketData) private _markets;

    modifier onlyAdmin() {
        if (admins[msg.sender] != 1) revert NotAdmin();
        _;
    }

    function initialize(address admin_, address ctf_, address col_, address wcol_, address vault_) external {
        require(!initialized, "already initialized");
        require(admin_ != address(0) && ctf_ != address(0) && col_ != address(0) && wcol_ != address(0)
            && vault_ != address(0), "zero address");
        initialized = true;
        admins[admin_] = 1;
        ctf = IConditionalTokens(ctf_);
        col = IERC20(col_);
        wcol = IWrappedCollateral(wcol_);
        vault = vault_;
        wcol.initialize(col_);
        require(wcol.approve(ctf_, type(uint256).max), "approve failed"); // the CTF pulls the WCOL it splits
    }

    function addAdmin(address admin) external onlyAdmin {
        admins[admin] = 1;
        emit NewAdmin(msg.sender, admin);
    }

    function isAdmin(address addr) external view returns (bool) {
        return admins[addr] == 1;
    }

    // ------------------------------------------------------------------ ids and market data

    function getConditionId(bytes32 questionId) public view returns (bytes32) {
        return keccak256(abi.encodePacked(address(this), questionId, uint256(2)));
    }

    /// YES is index set 1, NO index set 2, both collateralised by WCOL.
    function getPositionId(bytes32 questionId, bool outcome) public view returns (uint256) {
        return _positionId(getConditionId(questionId), outcome ? 1 : 2);
    }

    function getOracle(bytes32 marketId) external view returns (address) {
        return _markets[marketId].oracle;
    }

    function getQuestionCount(bytes32 marketId) external view returns (uint256) {
        return _markets[marketId].questionCount;
    }

    function getDetermined(bytes32 marketId) external view returns (bool) {
        return _markets[marketId].determined;
    }

    function getResult(bytes32 marketId) external view returns (uint256) {
        return _markets[marketId].result;
    }

    function getFeeBips(bytes32 marketId) external view returns (uint256) {
        return _markets[marketId].feeBips;
    }

    // ------------------------------------------------------------------ markets and questions

    /// The caller becomes the market's oracle; the market id commits to it, the fee and the data.
    function prepareMarket(uint256 feeBips, bytes calldata data) external onlyAdmin returns (bytes32 marketId) {
        marketId = keccak256(abi.encode(msg.sender, feeBips, data)) & MARKET_MASK;
        if (_markets[marketId].oracle != address(0)) revert MarketAlreadyPrepared();
        if (feeBips > FEE_DENOMINATOR) revert FeeBipsOutOfBounds();
        _markets[marketId] = MarketData(msg.sender, uint16(feeBips), 0, false, 0);
        emit MarketPrepared(marketId, msg.sender, feeBips, data);
    }

    function prepareQuestion(bytes32 marketId, bytes calldata data) external returns (bytes32 questionId) {
        MarketData storage md = _markets[marketId];
        if (md.oracle == address(0)) revert MarketNotPrepared();
        if (md.oracle != msg.sender) revert OnlyOracle();
        uint256 index = md.questionCount;
        if (index >= MAX_QUESTIONS) revert IndexOutOfBounds();
        md.questionCount = uint8(index + 1);
        questionId = bytes32(uint256(marketId) + index);
        bytes32 conditionId = getConditionId(questionId);
        if (ctf.getOutcomeSlotCount(conditionId) == 0) {
            ctf.prepareCondition(address(this), questionId, 2);
        }
        emit QuestionPrepared(marketId, questionId, index, data);
    }

    /// Payouts [1, 0] for YES, [0, 1] for NO; a second YES in the same market reverts.
    function reportOutcome(bytes32 questionId, bool outcome) external {
        bytes32 marketId = questionId & MARKET_MASK;
        uint256 index = uint8(uint256(questionId));
        MarketData storage md = _markets[marketId];
        if (md.oracle == address(0)) revert MarketNotPrepared();
        if (md.oracle != msg.sender) revert OnlyOracle();
        if (index >= md.questionCount) revert IndexOutOfBounds();
        if (outcome) {
            if (md.determined) revert MarketAlreadyDetermined();
            md.determined = true;
            md.result = uint8(index);
        }
        uint256[] memory payouts = new uint256[](2);
        payouts[outcome ? 0 : 1] = 1;
        ctf.reportPayouts(questionId, payouts);
        emit OutcomeReported(marketId, questionId, outcome);
    }

    // ------------------------------------------------------------------ split / merge / redeem

    /// The CTF's signature: clients written for the CTF split neg-risk positions unchanged.
    function splitPosition(address collateralToken, bytes32, bytes32 conditionId, uint256[] calldata, uint256 amount)
        external
    {
        if (collateralToken != address(col)) revert UnexpectedCollateralToken();
        splitPosition(conditionId, amount);
    }

    /// pUSD in, one YES and one NO per unit out. The pUSD goes straight into WCOL's reserve and
    /// as much WCOL is minted: the real adapter's transfer-then-wrap, without the hop through
    /// this contract (a settlement's gas is mostly such round trips).
    function splitPosition(bytes32 conditionId, uint256 amount) public {
        require(col.transferFrom(msg.sender, address(wcol), amount), "collateral transfer failed");
        wcol.mint(amount);
        ctf.splitPosition(address(wcol), bytes32(0), conditionId, _partition(), amount);
        ctf.safeBatchTransferFrom(address(this), msg.sender, _positionIds(conditionId), _values(2, amount), "");
        emit PositionSplit(msg.sender, conditionId, amount);
    }

    function mergePositions(address collateralToken, bytes32, bytes32 conditionId, uint256[] calldata, uint256 amount)
        external
    {
        if (collateralToken != address(col)) revert UnexpectedCollateralToken();
        mergePositions(conditionId, amount);
    }

    /// One YES and one NO per unit in (the caller approved this adapter on the CTF), pUSD out.
    function mergePositions(bytes32 conditionId, uint256 amount) public {
        ctf.safeBatchTransferFrom(msg.sender, address(this), _positionIds(conditionId), _values(2, amount), "");
        ctf.mergePositions(address(wcol), bytes32(0), conditionId, _partition(), amount);
        wcol.unwrap(msg.sender, amount);
        emit PositionsMerge(msg.sender, conditionId, amount);
    }

    /// @param amounts [YES, NO] to redeem; the payout is paid in pUSD.
    function redeemPositions(bytes32 conditionId, uint256[] calldata amounts) external {
        if (amounts.length != 2) revert LengthMismatch();
        ctf.safeBatchTransferFrom(msg.sender, address(this), _positionIds(conditionId), amounts, "");
        ctf.redeemPositions(address(wcol), bytes32(0), conditionId, _partition());
        uint256 payout = wcol.balanceOf(address(this));
        if (payout > 0) {
            wcol.unwrap(msg.sender, payout);
        }
        emit PayoutRedemption(msg.sender, conditionId, amounts, payout);
    }

    // ------------------------------------------------------------------ convert

    /// `amount` NO of each of the m questions in `indexSet` (lowest bit = question 0) become
    /// (m - 1) * amountOut pUSD plus amountOut YES of every other question, amountOut = amount
    /// less feeBips (the fee, in pUSD and YES alike, goes to the vault). The NO given up, and the
    /// NO of the other questions' splits (from WCOL minted unbacked), go to the burn address and
    /// are never redeemed; their WCOL stays in the CTF for ever. Why every claim stays backed: at
    /// most one question resolves YES. If it is in the set, the m - 1 other burnt NO would have
    /// paid: exactly the pUSD released. If it is outside, all m would have: one unit more, which
    /// pays the winning YES that was split from minted WCOL.
    function convertPositions(bytes32 marketId, uint256 indexSet, uint256 amount) external {
        MarketData memory md = _markets[marketId];
        if (md.oracle == address(0)) revert MarketNotPrepared();
        if (md.questionCount <= 1) revert NoConvertiblePositions();
        if (indexSet == 0 || (indexSet >> md.questionCount) > 0) revert InvalidIndexSet();
        if (amount == 0) return;

        (uint256[] memory noIds, uint256[] memory yesIds) =
            _splitComplements(marketId, md.questionCount, indexSet, amount);
        ctf.safeBatchTransferFrom(msg.sender, NO_TOKEN_BURN_ADDRESS, noIds, _values(noIds.length, amount), "");

        uint256 fee = amount * md.feeBips / FEE_DENOMINATOR;
        uint256 amountOut = amount - fee;
        if (noIds.length > 1) {
            if (fee > 0) wcol.release(vault, (noIds.length - 1) * fee);
            wcol.release(msg.sender, (noIds.length - 1) * amountOut);
        }
        if (yesIds.length > 0) {
            if (fee > 0) ctf.safeBatchTransferFrom(address(this), vault, yesIds, _values(yesIds.length, fee), "");
            ctf.safeBatchTransferFrom(address(this), msg.sender, yesIds, _values(yesIds.length, amountOut), "");
        }
        emit PositionsConverted(msg.sender, marketId, indexSet, amount);
    }

    /// The NO ids of the questions in `indexSet`, and the YES ids of the others, of which this
    /// adapter now holds `amount` each: split from freshly minted WCOL, their NO burnt.
    function _splitComplements(bytes32 marketId, uint256 questionCount, uint256 indexSet, uint256 amount)
        private returns (uint256[] memory noIds, uint256[] memory yesIds)
    {
        uint256 noCount = 0;
        for (uint256 i = 0; i < questionCount; i++) {
            if (indexSet & (1 << i) != 0) noCount++;
        }
        noIds = new uint256[](noCount);
        yesIds = new uint256[](questionCount - noCount);
        uint256[] memory spareNoIds = new uint256[](yesIds.length);
        if (yesIds.length > 0) wcol.mint(yesIds.length * amount);
        (uint256 n, uint256 y) = (0, 0);
        for (uint256 i = 0; i < questionCount; i++) {
            bytes32 conditionId = getConditionId(bytes32(uint256(marketId) + i));
            if (indexSet & (1 << i) != 0) {
                noIds[n++] = _positionId(conditionId, 2);
            } else {
                yesIds[y] = _positionId(conditionId, 1);
                spareNoIds[y++] = _positionId(conditionId, 2);
                ctf.splitPosition(address(wcol), bytes32(0), conditionId, _partition(), amount);
            }
        }
        if (spareNoIds.length > 0) {
            ctf.safeBatchTransferFrom(address(this), NO_TOKEN_BURN_ADDRESS, spareNoIds, _values(y, amount), "");
        }
    }

    // ------------------------------------------------------------------ ERC-1155 (proxies and receiver)

    function balanceOf(address owner, uint256 id) external view returns (uint256) {
        return ctf.balanceOf(owner, id);
    }

    function balanceOfBatch(address[] calldata owners, uint256[] calldata ids) external view returns (uint256[] memory) {
        return ctf.balanceOfBatch(owners, ids);
    }

    function onERC1155Received(address operator, address, uint256, uint256, bytes calldata)
        external view returns (bytes4)
    {
        _acceptOnlyOwnTransfers(operator);
        return this.onERC1155Received.selector;
    }

    function onERC1155BatchReceived(address operator, address, uint256[] calldata, uint256[] calldata, bytes calldata)
        external view returns (bytes4)
    {
        _acceptOnlyOwnTransfers(operator);
        return this.onERC1155BatchReceived.selector;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == 0x4e2312e0; // ERC-165, ERC-1155 receiver
    }

    // ------------------------------------------------------------------ internal

    function _acceptOnlyOwnTransfers(address operator) private view {
        require(msg.sender == address(ctf) && operator == address(this), "adapter takes no deposits");
    }

    function _positionId(bytes32 conditionId, uint256 indexSet) private view returns (uint256) {
        bytes32 collectionId = keccak256(abi.encodePacked(bytes32(0), conditionId, indexSet));
        return uint256(keccak256(abi.encodePacked(address(wcol), collectionId)));
    }

    function _positionIds(bytes32 conditionId) private view returns (uint256[] memory ids) {
        ids = new uint256[](2);
        ids[0] = _positionId(conditionId, 1);
        ids[1] = _positionId(conditionId, 2);
    }

    function _partition() private pure returns (uint256[] memory partition) {
        partition = new uint256[](2);
        partition[0] = 1;
        partition[1] = 2;
    }

    function _values(uint256 length, uint256 value) private pure returns (uint256[] memory values) {
        values = new uint256[](length);
        for (uint256 i = 0; i < length; i++) {
            values[i] = value;
        }
    }
}
