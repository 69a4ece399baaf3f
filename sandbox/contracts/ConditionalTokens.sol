// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IERC1155Receiver {
    function onERC1155Received(address operator, address from, uint256 id, uint256 value, bytes calldata data)
        external returns (bytes4);
    function onERC1155BatchReceived(
        address operator, address from, uint256[] calldata ids, uint256[] calldata values, bytes calldata data
    ) external returns (bytes4);
}

/// @title ConditionalTokens: a compact Gnosis-CTF-compatible ERC-1155 for the sandbox.
/// @notice Same function signatures and events as Gnosis' ConditionalTokens, so clients
///         written for Polymarket's CTF work unchanged. Differences, on purpose:
///         - collection ids are keccak256(parent, condition, indexSet), not elliptic-curve
///           points, so only top-level positions (parentCollectionId == 0) are supported;
///         - no constructor and no state to initialize (placed with anvil_setCode).
///         Splitting a subset of the outcomes (a partition of a proper index set) burns the
///         position of the union, as in Gnosis.
contract ConditionalTokens {
    // ERC-1155 state
    mapping(uint256 => mapping(address => uint256)) private _balances;
    mapping(address => mapping(address => bool)) private _operatorApprovals;

    // CTF state: a condition is prepared when its numerator array is non-empty,
    // resolved when its denominator is non-zero.
    mapping(bytes32 => uint256[]) public payoutNumerators;
    mapping(bytes32 => uint256) public payoutDenominator;

    event TransferSingle(
        address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value
    );
    event TransferBatch(
        address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values
    );
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);
    event URI(string value, uint256 indexed id);

    event ConditionPreparation(
        bytes32 indexed conditionId, address indexed oracle, bytes32 indexed questionId, uint256 outcomeSlotCount
    );
    event ConditionResolution(
        bytes32 indexed conditionId,
        address indexed oracle,
        bytes32 indexed questionId,
        uint256 outcomeSlotCount,
        uint256[] payoutNumerators
    );
    event PositionSplit(
        address indexed stakeholder,
        IERC20 collateralToken,
        bytes32 indexed parentCollectionId,
        bytes32 indexed conditionId,
        uint256[] partition,
        uint256 amount
    );
    event PositionsMerge(
        address indexed stakeholder,
        IERC20 collateralToken,
        bytes32 indexed parentCollectionId,
        bytes32 indexed conditionId,
        uint256[] partition,
        uint256 amount
    );
    event PayoutRedemption(
        address indexed redeemer,
        IERC20 indexed collateralToken,
        bytes32 indexed parentCollectionId,
        bytes32 conditionId,
        uint256[] indexSets,
        uint256 payout
    );

    // ------------------------------------------------------------------ ids

    function getConditionId(address oracle, bytes32 questionId, uint256 outcomeSlotCount)
        public pure returns (bytes32)
    {
        return keccak256(abi.encodePacked(oracle, questionId, outcomeSlotCount));
    }

    function getCollectionId(bytes32 parentCollectionId, bytes32 conditionId, uint256 indexSet)
        public pure returns (bytes32)
    {
        return keccak256(abi.encodePacked(parentCollectionId, conditionId, indexSet));
    }

    function getPositionId(IERC20 collateralToken, bytes32 collectionId) public pure returns (uint256) {
        return uint256(keccak256(abi.encodePacked(collateralToken, collectionId)));
    }

    function getOutcomeSlotCount(bytes32 conditionId) external view returns (uint256) {
        return payoutNumerators[conditionId].length;
    }

    // ------------------------------------------------------------------ conditions

    function prepareCondition(address oracle, bytes32 questionId, uint256 outcomeSlotCount) external {
        require(outcomeSlotCount <= 256, "too many outcome slots");
        require(outcomeSlotCount > 1, "there should be more than one outcome slot");
        bytes32 conditionId = getConditionId(oracle, questionId, outcomeSlotCount);
        require(payoutNumerators[conditionId].length == 0, "condition already prepared");
        payoutNumerators[conditionId] = new uint256[](outcomeSlotCount);
        emit ConditionPreparation(conditionId, oracle, questionId, outcomeSlotCount);
    }

    /// The oracle is msg.sender: only the address the condition was prepared for can resolve it.
    function reportPayouts(bytes32 questionId, uint256[] calldata payouts) external {
        uint256 outcomeSlotCount = payouts.length;
        require(outcomeSlotCount > 1, "there should be more than one outcome slot");
        bytes32 conditionId = getConditionId(msg.sender, questionId, outcomeSlotCount);
        uint256[] storage numerators = payoutNumerators[conditionId];
        require(numerators.length == outcomeSlotCount, "condition not prepared or found");
        require(payoutDenominator[conditionId] == 0, "payout denominator already set");
        uint256 den = 0;
        for (uint256 i = 0; i < outcomeSlotCount; i++) {
            den += payouts[i];
            numerators[i] = payouts[i];
        }
        require(den > 0, "payout is all zeroes");
        payoutDenominator[conditionId] = den;
        emit ConditionResolution(conditionId, msg.sender, questionId, outcomeSlotCount, numerators);
    }

    // ------------------------------------------------------------------ split / merge / redeem

    function splitPosition(
        IERC20 collateralToken,
        bytes32 parentCollectionId,
        bytes32 conditionId,
        uint256[] calldata partition,
        uint256 amount
    ) external {
        (uint256[] memory ids, uint256[] memory amounts, uint256 union, uint256 full) =
            _partition(collateralToken, parentCollectionId, conditionId, partition, amount);
        if (union == full) {
            require(collateralToken.transferFrom(msg.sender, address(this), amount), "could not receive collateral");
        } else {
            _burn(msg.sender, getPositionId(collateralToken, getCollectionId(0, conditionId, union)), amount);
        }
        _mintBatch(msg.sender, ids, amounts);
        emit PositionSplit(msg.sender, collateralToken, parentCollectionId, conditionId, partition, amount);
    }

    function mergePositions(
        IERC20 collateralToken,
        bytes32 parentCollectionId,
        bytes32 conditionId,
        uint256[] calldata partition,
        uint256 amount
    ) external {
        (uint256[] memory ids, uint256[] memory amounts, uint256 union, uint256 full) =
            _partition(collateralToken, parentCollectionId, conditionId, partition, amount);
        _burnBatch(msg.sender, ids, amounts);
        if (union == full) {
            require(collateralToken.transfer(msg.sender, amount), "could not send collateral");
        } else {
            _mint(msg.sender, getPositionId(collateralToken, getCollectionId(0, conditionId, union)), amount);
        }
        emit PositionsMerge(msg.sender, collateralToken, parentCollectionId, conditionId, partition, amount);
    }

    function redeemPositions(
        IERC20 collateralToken,
        bytes32 parentCollectionId,
        bytes32 conditionId,
        uint256[] calldata indexSets
    ) external {
        require(parentCollectionId == bytes32(0), "nested positions unsupported");
        uint256 den = payoutDenominator[conditionId];
        require(den > 0, "result for condition not received yet");
        uint256[] storage numerators = payoutNumerators[conditionId];
        uint256 full = _fullIndexSet(numerators.length);
        uint256 totalPayout = 0;
        for (uint256 i = 0; i < indexSets.length; i++) {
            uint256 indexSet = indexSets[i];
            require(indexSet > 0 && indexSet < full, "got invalid index set");
            uint256 positionId = getPositionId(collateralToken, getCollectionId(0, conditionId, indexSet));
            uint256 numerator = 0;
            for (uint256 j = 0; j < numerators.length; j++) {
                if (indexSet & (1 << j) != 0) numerator += numerators[j];
            }
            uint256 stake = _balances[positionId][msg.sender];
            if (stake > 0) {
                totalPayout += stake * numerator / den;
                _burn(msg.sender, positionId, stake);
            }
        }
        if (totalPayout > 0) {
            require(collateralToken.transfer(msg.sender, totalPayout), "could not transfer payout");
        }
        emit PayoutRedemption(msg.sender, collateralToken, parentCollectionId, conditionId, indexSets, totalPayout);
    }

    /// Validates a disjoint partition and returns its position ids, the per-id amounts,
    /// the union of its index sets and the condition's full index set.
    function _partition(
        IERC20 collateralToken,
        bytes32 parentCollectionId,
        bytes32 conditionId,
        uint256[] calldata partition,
        uint256 amount
    ) private view returns (uint256[] memory ids, uint256[] memory amounts, uint256 union, uint256 full) {
        require(parentCollectionId == bytes32(0), "nested positions unsupported");
        require(partition.length > 1, "got empty or singleton partition");
        uint256 slots = payoutNumerators[conditionId].length;
        require(slots > 0, "condition not prepared yet");
        full = _fullIndexSet(slots);
        ids = new uint256[](partition.length);
        amounts = new uint256[](partition.length);
        for (uint256 i = 0; i < partition.length; i++) {
            uint256 indexSet = partition[i];
            require(indexSet > 0 && indexSet < full, "got invalid index set");
            require(indexSet & union == 0, "partition not disjoint");
            union |= indexSet;
            ids[i] = getPositionId(collateralToken, getCollectionId(0, conditionId, indexSet));
            amounts[i] = amount;
        }
    }

    function _fullIndexSet(uint256 slots) private pure returns (uint256) {
        return type(uint256).max >> (256 - slots);
    }

    // ------------------------------------------------------------------ ERC-1155

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == 0xd9b67a26; // ERC-165, ERC-1155
    }

    function balanceOf(address owner, uint256 id) external view returns (uint256) {
        return _balances[id][owner];
    }

    function balanceOfBatch(address[] calldata owners, uint256[] calldata ids)
        external view returns (uint256[] memory balances)
    {
        require(owners.length == ids.length, "owners and ids length mismatch");
        balances = new uint256[](owners.length);
        for (uint256 i = 0; i < owners.length; i++) {
            balances[i] = _balances[ids[i]][owners[i]];
        }
    }

    function setApprovalForAll(address operator, bool approved) external {
        require(operator != msg.sender, "setting approval status for self");
        _operatorApprovals[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function isApprovedForAll(address owner, address operator) public view returns (bool) {
        return _operatorApprovals[owner][operator];
    }

    function safeTransferFrom(address from, address to, uint256 id, uint256 value, bytes calldata data) external {
        require(to != address(0), "transfer to zero address");
        require(from == msg.sender || isApprovedForAll(from, msg.sender), "caller is not owner nor approved");
        _move(from, to, id, value);
        emit TransferSingle(msg.sender, from, to, id, value);
        _checkReceived(from, to, id, value, data);
    }

    function safeBatchTransferFrom(
        address from, address to, uint256[] calldata ids, uint256[] calldata values, bytes calldata data
    ) external {
        require(to != address(0), "transfer to zero address");
        require(ids.length == values.length, "ids and values length mismatch");
        require(from == msg.sender || isApprovedForAll(from, msg.sender), "caller is not owner nor approved");
        for (uint256 i = 0; i < ids.length; i++) {
            _move(from, to, ids[i], values[i]);
        }
        emit TransferBatch(msg.sender, from, to, ids, values);
        _checkBatchReceived(from, to, ids, values, data);
    }

    function _move(address from, address to, uint256 id, uint256 value) private {
        uint256 balance = _balances[id][from];
        require(balance >= value, "insufficient balance for transfer");
        _balances[id][from] = balance - value;
        _balances[id][to] += value;
    }

    function _mint(address to, uint256 id, uint256 value) private {
        _balances[id][to] += value;
        emit TransferSingle(msg.sender, address(0), to, id, value);
        _checkReceived(address(0), to, id, value, "");
    }

    function _mintBatch(address to, uint256[] memory ids, uint256[] memory values) private {
        for (uint256 i = 0; i < ids.length; i++) {
            _balances[ids[i]][to] += values[i];
        }
        emit TransferBatch(msg.sender, address(0), to, ids, values);
        _checkBatchReceived(address(0), to, ids, values, "");
    }

    function _burn(address from, uint256 id, uint256 value) private {
        uint256 balance = _balances[id][from];
        require(balance >= value, "burn amount exceeds balance");
        _balances[id][from] = balance - value;
        emit TransferSingle(msg.sender, from, address(0), id, value);
    }

    function _burnBatch(address from, uint256[] memory ids, uint256[] memory values) private {
        for (uint256 i = 0; i < ids.length; i++) {
            uint256 balance = _balances[ids[i]][from];
            require(balance >= values[i], "burn amount exceeds balance");
            _balances[ids[i]][from] = balance - values[i];
        }
        emit TransferBatch(msg.sender, from, address(0), ids, values);
    }

    // Contract recipients must accept (ERC-1155 safe transfer rules); EOAs always do.
    function _checkReceived(address from, address to, uint256 id, uint256 value, bytes memory data) private {
        if (to.code.length == 0) return;
        bytes4 answer = IERC1155Receiver(to).onERC1155Received(msg.sender, from, id, value, data);
        require(answer == IERC1155Receiver.onERC1155Received.selector, "ERC1155Receiver rejected tokens");
    }

    function _checkBatchReceived(
        address from, address to, uint256[] memory ids, uint256[] memory values, bytes memory data
    ) private {
        if (to.code.length == 0) return;
        bytes4 answer = IERC1155Receiver(to).onERC1155BatchReceived(msg.sender, from, ids, values, data);
        require(answer == IERC1155Receiver.onERC1155BatchReceived.selector, "ERC1155Receiver rejected tokens");
    }
}
