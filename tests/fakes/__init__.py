"""Fakes at the adapter seams, for unit tests (no root, no bubblewrap).  Each one passes the same
contract suite as the real adapters it stands for (tests/contract), so it cannot drift."""
