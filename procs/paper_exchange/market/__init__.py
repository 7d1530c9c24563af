"""The paper exchange's replayed market: klines, prices, tapes and their wire bodies."""
