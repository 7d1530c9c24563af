"""The watchdog's pure logic: no sockets, files, clock or event loop
(tests/unit/core/test_purity.py);
decisions are values that the program carries out."""
