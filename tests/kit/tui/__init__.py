"""Helpers of the interface's tests: a fake engine (fakes), every screen in a fixed state
(scenes), and driving an app with Pilot (pilot)."""
