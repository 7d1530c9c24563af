"""The daily report's figures, shared by the reporter and `slt report`."""
