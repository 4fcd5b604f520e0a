using System.Text;
using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Model;

/// <summary>A broken checkpoint is an error that names the file and the tensor, never a crash or garbage.</summary>
public sealed class CheckpointErrorTests
{
    static string Broken(Action<string> breakIt, int shards = 1)
    {
        string dir = TestCheckpoints.NewDirectory("broken");
        string source = TestCheckpoints.Get("small-dense", TestCheckpoints.SmallDense, shards: shards);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        breakIt(dir);
        return dir;
    }

    static CheckpointException LoadFails(string dir) =>
        Assert.Throws<CheckpointException>(() => LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 4, BlockSize = 4 }).Dispose());

    static void Rewrite(string dir, Func<IReadOnlyList<TensorSpec>, IEnumerable<TensorSpec>> change)
    {
        string path = Path.Combine(dir, CheckpointReader.SingleFileName);
        string copy = path + ".orig";
        File.Move(path, copy);
        using var original = SafetensorsFile.Open(copy);
        var specs = original.Entries.Values.Select(e => new TensorSpec(e.Name, e.Shape, e.DType,
            () => original.WithBytes(e, (p, n) => TensorFactory.FromBytes(p, n, e.DType, e.Shape, ScalarType.Float32, CPU)))).ToList();
        SafetensorsWriter.WriteFile(path, change(specs).ToList());
    }

    [Fact]
    public void MissingTensorNamesFileAndTensor()
    {
        var error = LoadFails(Broken(dir => Rewrite(dir, specs => specs.Where(s => s.Name != "model.layers.1.self_attn.k_norm.weight"))));
        Assert.Contains("model.safetensors", error.Message);
        Assert.Contains("missing tensor 'model.layers.1.self_attn.k_norm.weight'", error.Message);
    }

    [Fact]
    public void WrongShapeNamesFileTensorAndBothShapes()
    {
        var error = LoadFails(Broken(dir => Rewrite(dir, specs => specs.Select(s => s.Name == "model.layers.2.mlp.up_proj.weight"
            ? new TensorSpec(s.Name, [48, 96], s.DType, () => zeros(48, 96))
            : s))));
        Assert.Contains("model.safetensors: tensor 'model.layers.2.mlp.up_proj.weight' has shape [48, 96], expected [96, 48]", error.Message);
    }

    [Fact]
    public void TruncatedFileNamesTheTensorThatRunsPastTheEnd()
    {
        var error = LoadFails(Broken(dir =>
        {
            string path = Path.Combine(dir, CheckpointReader.SingleFileName);
            using var stream = new FileStream(path, FileMode.Open);
            stream.SetLength(stream.Length - 100);
        }));
        Assert.Contains("model.safetensors: truncated: tensor '", error.Message);
    }

    [Fact]
    public void FileShorterThanItsHeaderIsTruncated()
    {
        var error = LoadFails(Broken(dir =>
        {
            string path = Path.Combine(dir, CheckpointReader.SingleFileName);
            using var stream = new FileStream(path, FileMode.Open);
            stream.SetLength(40);
        }));
        Assert.Contains("truncated: the header claims", error.Message);
    }

    [Theory]
    [InlineData("{not json", "bad header: not valid JSON")]
    [InlineData("[1, 2]", "bad header: the header is not a JSON object")]
    [InlineData("{\"model.embed_tokens.weight\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", "bad header for tensor 'model.embed_tokens.weight': dtype 'I8' is not supported")]
    [InlineData("{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 4]}}", "bad header for tensor 'model.embed_tokens.weight': shape [2, 2] of F32 needs 16 bytes")]
    [InlineData("{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", "bad header for tensor 'model.embed_tokens.weight': 'data_offsets'")]
    public void BadHeaderIsAClearError(string header, string expected)
    {
        var error = LoadFails(Broken(dir =>
        {
            var bytes = Encoding.UTF8.GetBytes(header);
            using var stream = File.Create(Path.Combine(dir, CheckpointReader.SingleFileName));
            stream.Write(BitConverter.GetBytes((ulong)bytes.Length));
            stream.Write(bytes);
            stream.Write(new byte[64]);
        }));
        Assert.Contains("model.safetensors: " + expected, error.Message);
    }

    [Fact]
    public void ImplausibleHeaderLengthIsABadHeader()
    {
        var error = LoadFails(Broken(dir =>
        {
            using var stream = new FileStream(Path.Combine(dir, CheckpointReader.SingleFileName), FileMode.Open);
            stream.Write(BitConverter.GetBytes(ulong.MaxValue - 5));
        }));
        Assert.Contains("bad header: header length", error.Message);
    }

    [Fact]
    public void MissingShardNamesTheShardFile()
    {
        var error = LoadFails(Broken(dir => File.Delete(Path.Combine(dir, "model-00002-of-00002.safetensors")), shards: 2));
        Assert.Contains("model-00002-of-00002.safetensors: file not found", error.Message);
    }

    [Fact]
    public void TensorMissingFromTheIndexNamesTheIndex()
    {
        var error = LoadFails(Broken(dir =>
        {
            string index = Path.Combine(dir, CheckpointReader.IndexFileName);
            File.WriteAllText(index, File.ReadAllText(index).Replace("\"model.norm.weight\"", "\"model.norm.weight.renamed\""));
        }, shards: 2));
        Assert.Contains($"{CheckpointReader.IndexFileName}: missing tensor 'model.norm.weight'", error.Message);
    }

    [Fact]
    public void IndexPointingOutsideTheFolderIsRefused()
    {
        var error = LoadFails(Broken(dir =>
        {
            string index = Path.Combine(dir, CheckpointReader.IndexFileName);
            File.WriteAllText(index, File.ReadAllText(index).Replace("\"model-00001-of-00002.safetensors\"", "\"../../etc/passwd\""));
        }, shards: 2));
        Assert.Contains("bad index", error.Message);
    }

    [Fact]
    public void EmptyFolderSaysWhatIsMissing()
    {
        string dir = TestCheckpoints.NewDirectory("empty");
        File.Copy(Path.Combine(TestCheckpoints.Get("small-dense", TestCheckpoints.SmallDense), "config.json"), Path.Combine(dir, "config.json"));
        Assert.Contains("no model.safetensors or model.safetensors.index.json", LoadFails(dir).Message);
    }

    [Fact]
    public void LoadingAnExpertGroupReadsOnlyItsTensors()
    {
        var config = TestCheckpoints.SmallMoe;
        string dir = TestCheckpoints.Get("small-moe", config, shards: 3);
        using var reader = CheckpointReader.Open(dir);
        var weights = new CountingWeights(new Qwen3Cluster.Model.Layers.CheckpointWeights(reader, CPU));
        using var group = new Qwen3Cluster.Model.Layers.ExpertGroup(config, layer: 2, new Qwen3Cluster.Model.Layers.ExpertRange(2, 5), weights);
        Assert.Equal(9, weights.Names.Count);
        Assert.All(weights.Names, n => Assert.Matches(@"^model\.layers\.2\.mlp\.experts\.[234]\.", n));
    }

    sealed class CountingWeights(Qwen3Cluster.Model.Layers.IWeightSource inner) : Qwen3Cluster.Model.Layers.IWeightSource
    {
        public List<string> Names { get; } = [];
        public Device Device => inner.Device;
        public bool Contains(string name) => inner.Contains(name);

        public Tensor Load(string name, params long[] shape)
        {
            Names.Add(name);
            return inner.Load(name, shape);
        }
    }
}
