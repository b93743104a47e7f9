# bench/sets.sh — sourced by bench/cpu_speed.sh and bench/quantize_time.sh.
# hf_of SET FILES SHARED: prints the HF checkpoint of a benchmark set — qf-27m (shared), or
# llama-3.2-1b (random weights of Llama-3.2-1B's shape, made into FILES/hf once by qforge_make_shape).
hf_of() {
  case $1 in
  qf-27m) echo "$3/models/qf-27m" ;;
  llama-3.2-1b)
    [[ -d $2/hf ]] || ./build/qforge_make_shape llama-3.2-1b "$2/hf" --tokenizers "$3/tokenizers" >&2
    echo "$2/hf"
    ;;
  *) echo "bench: unknown set '$1' (qf-27m or llama-3.2-1b)" >&2 && return 1 ;;
  esac
}
