"""The one place flowzoo calls diffrax: ODE and SDE solves with NFE statistics.

CNF likelihoods, flow-matching sampling, the probability-flow ODE and the reverse SDE all
call these functions rather than wrapping diffrax again.
"""
