// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title Collateral: the sandbox's pUSD (6 decimals), a plain ERC-20 with an admin mint.
/// @notice Placed with anvil_setCode at Polymarket's collateral address; setCode runs no
///         constructor, so the admin is set once through `initialize`.
contract Collateral {
    string public constant name = "Polymarket USD";
    string public constant symbol = "pUSD";
    uint8 public constant decimals = 6;

    bool public initialized;
    address public admin;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function initialize(address admin_) external {
        require(!initialized, "already initialized");
        require(admin_ != address(0), "zero admin");
        initialized = true;
        admin = admin_;
    }

    function mint(address to, uint256 amount) external {
        require(msg.sender == admin, "not admin");
        require(to != address(0), "mint to zero address");
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    /// An allowance of type(uint256).max is never decreased (the usual "infinite approval").
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "insufficient allowance");
            allowance[from][msg.sender] = allowed - amount;
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        require(to != address(0), "transfer to zero address");
        uint256 balance = balanceOf[from];
        require(balance >= amount, "insufficient balance");
        balanceOf[from] = balance - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
