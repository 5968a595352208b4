"""The one error type raised for bad input data."""


class DataError(ValueError):
  """Bad or missing input data.

  The message is a single line that names the file (and line, where there is
  one) and the problem, so that binaries can print it as it is and exit.
  """

  def __init__(self, message: str):
    super().__init__(' '.join(str(message).split()))
