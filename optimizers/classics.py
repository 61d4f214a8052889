"""The optax classics, registered with defaults and tuning ranges.

These are optax's own transformations; the defaults (in each wrapper's signature) are optax's
(or the usual ones from the papers) and the ranges are those a careful tuner would search.
"""

import optax

from optimizers.base import Range, register

_LR = Range(1e-4, 1.0)


def sgd(learning_rate=1e-3):
    """Plain (stochastic) gradient descent: x <- x - lr g."""
    return optax.sgd(learning_rate)


def momentum(learning_rate=1e-3, momentum=0.9):
    """Heavy-ball momentum (Polyak 1964): v <- m v + g, x <- x - lr v."""
    return optax.sgd(learning_rate, momentum=momentum)


def nesterov(learning_rate=1e-3, momentum=0.9):
    """Nesterov accelerated gradient (Nesterov 1983; Sutskever et al. 2013 form)."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


def adam(learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    """Adam (Kingma and Ba 2015)."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def rmsprop(learning_rate=1e-3, decay=0.9, eps=1e-8):
    """RMSProp (Tieleman and Hinton 2012)."""
    return optax.rmsprop(learning_rate, decay=decay, eps=eps)


def adagrad(learning_rate=1e-1, eps=1e-7):
    """AdaGrad (Duchi, Hazan and Singer 2011)."""
    return optax.adagrad(learning_rate, eps=eps)


def register_all():
    register("sgd", sgd, {"learning_rate": _LR}, reference="Robbins and Monro 1951")
    register("momentum", momentum, {"learning_rate": _LR, "momentum": Range(0.5, 0.999, log=False)},
             reference="Polyak 1964")
    register("nesterov", nesterov, {"learning_rate": _LR, "momentum": Range(0.5, 0.999, log=False)},
             reference="Nesterov 1983; Sutskever et al. 2013")
    register("adam", adam, {"learning_rate": _LR, "b1": Range(0.5, 0.99, log=False)},
             reference="Kingma and Ba 2015")
    register("rmsprop", rmsprop, {"learning_rate": _LR, "decay": Range(0.5, 0.999, log=False)},
             reference="Tieleman and Hinton 2012")
    register("adagrad", adagrad, {"learning_rate": _LR}, reference="Duchi, Hazan and Singer 2011")
