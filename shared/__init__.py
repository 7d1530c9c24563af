"""The library every SelfLearningTrader process imports."""
