# GPAW build configuration used by scripts/setup.sh (GPAW_CONFIG): MPI, ScaLAPACK, FFTW, libxc, OpenBLAS.
# Without ScaLAPACK, plane-wave mode under MPI fails (assert in BLACSDistribution).
mpi = True
compiler = 'mpicc'
scalapack = True
fftw = True
libraries = ['xc', 'openblas', 'scalapack-openmpi', 'fftw3']
