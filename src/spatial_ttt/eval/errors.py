"""The one error type of the evaluation: bad input, reported with the file / record it concerns."""


class EvalError(ValueError):
    pass
