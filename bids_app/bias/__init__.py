"""The estimate's bias under the run's own noise regime, removed by simulation.

Runs after inference and before the bootstrap: :mod:`bids_app.bias.noise_match` fits the
run's nuisance regime (noise colour and level, event rates) to its spectra, and
:mod:`bids_app.bias.simulated` refits runs simulated at the estimate under that regime
to measure and remove the shift.
"""
