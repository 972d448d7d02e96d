"""Architecture search: spaces, supernets, NSGA-II, back-ends."""
