// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

interface IUnderlying {
    function decimals() external view returns (uint8);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title WrappedCollateral: WCOL, the collateral of every neg-risk CTF position.
/// @notice The interface of Polymarket's WrappedCollateral (neg-risk-ctf-adapter): an ERC-20
///         owned by the NegRiskAdapter, 1 WCOL per pUSD of its reserve. Only the owner wraps,
///         mints, burns and releases; anyone unwraps. The adapter's split pays pUSD into the
///         reserve and mints as much; convertPositions mints WCOL for the complements' splits
///         and releases pUSD without burning WCOL: the reserve then falls short of the supply
///         by exactly the WCOL locked for ever in the CTF behind burnt NO tokens.
///         Placed with anvil_setCode (no constructor): `initialize` makes its caller, the
///         adapter, the owner, as the real adapter's constructor deploys its own WCOL.
contract WrappedCollateral {
    error OnlyOwner();

    string public constant name = "Wrapped Collateral";
    string public constant symbol = "WCOL";

    bool public initialized;
    address public owner;
    address public underlying;
    uint8 public decimals;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    modifier onlyOwner() {
        if (msg.sender != owner) revert OnlyOwner();
        _;
    }

    function initialize(address underlying_) external {
        require(!initialized, "already initialized");
        require(underlying_ != address(0), "zero address");
        initialized = true;
        owner = msg.sender;
        underlying = underlying_;
        decimals = IUnderlying(underlying_).decimals();
    }

    /// Anyone holding WCOL gets its pUSD back.
    function unwrap(address to, uint256 amount) external {
        _burn(msg.sender, amount);
        require(IUnderlying(underlying).transfer(to, amount), "underlying transfer failed");
    }

    function wrap(address to, uint256 amount) external onlyOwner {
        require(IUnderlying(underlying).transferFrom(msg.sender, address(this), amount), "underlying transfer failed");
        _mint(to, amount);
    }

    function mint(uint256 amount) external onlyOwner {
        _mint(msg.sender, amount);
    }

    function burn(uint256 amount) external onlyOwner {
        _burn(msg.sender, amount);
    }

    /// pUSD out of the reserve, WCOL supply unchanged (see the contract's notice).
    function release(address to, uint256 amount) external onlyOwner {
        require(IUnderlying(underlying).transfer(to, amount), "underlying transfer failed");
    }

    // ------------------------------------------------------------------ ERC-20

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    /// An allowance of type(uint256).max is never decreased.
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

    function _mint(address to, uint256 amount) private {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function _burn(address from, uint256 amount) private {
        uint256 balance = balanceOf[from];
        require(balance >= amount, "insufficient balance");
        balanceOf[from] = balance - amount;
        totalSupply -= amount;
        emit Transfer(from, address(0), amount);
    }
}
