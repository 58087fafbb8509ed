// Models: filled in by its issue.
import TensorCore
