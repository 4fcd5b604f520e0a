using System.Runtime.CompilerServices;

// The tests check internal helpers (byte-level alphabet, Python-style JSON) against known reference values.
[assembly: InternalsVisibleTo("Qwen3Cluster.Tests")]
