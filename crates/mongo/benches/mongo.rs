fn main() {} // placeholder until the benchmark is written
