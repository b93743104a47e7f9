// core/threads.h — one thread pool for the whole program: OpenMP. BLAS is always called
// single-threaded from inside OpenMP loops, so the two pools never fight over the cores.
#pragma once

namespace qf {

// Sets the number of OpenMP threads (0 = all cores) and pins BLAS to one thread.
void set_num_threads(int n);
int num_threads();
// Pins BLAS to one thread; idempotent and cheap. Called by every BLAS user before its first call.
void init_blas_threads();

}  // namespace qf
