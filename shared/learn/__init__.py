"""Learning shared by the trader and `slt`: the model and its dataset."""
