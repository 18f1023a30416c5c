"""torch.distributions.kl_divergence as a function of two arrays, for its implementation record.

torch.distributions compares distribution objects, not arrays, so the record needs the two
Categorical distributions built from the canonical arguments. The prediction arrives as
log Q and goes in as logits (the library's own log-space constructor, no conversion); the
truth goes in as probs, or as logits when it is already log P. Everything else (the
renormalisation both constructors apply, the probs path's clamping, argument validation)
is the library's.
"""


def categorical_kl(log_prediction, target):
    """KL(Categorical(probs=target) || Categorical(logits=log_prediction)), one per row."""
    from torch.distributions import Categorical, kl_divergence

    return kl_divergence(Categorical(probs=target), Categorical(logits=log_prediction))


def categorical_kl_log_target(log_prediction, log_target):
    """The same with the truth given as log P (Categorical(logits=log_target))."""
    from torch.distributions import Categorical, kl_divergence

    return kl_divergence(Categorical(logits=log_target), Categorical(logits=log_prediction))
