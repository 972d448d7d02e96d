"""Analytic cost model: latency, throughput, energy, area, EDAP, bounds."""
