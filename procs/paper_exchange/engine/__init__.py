"""The paper exchange's trading engine: one USDT-M account, its orders, algo orders, matching,
ledger and settlement. No I/O."""
