import TensorCore
BLAS.configure()
print("forge: core \(BLAS.coreName) kernels \(BLAS.kernelLevel) threads \(Threads.count)")
