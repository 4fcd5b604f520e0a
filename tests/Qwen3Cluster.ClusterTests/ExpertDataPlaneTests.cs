using System.Buffers.Binary;
using System.Diagnostics.Metrics;
using System.Net.Sockets;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.DataPlane;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.ClusterTests;

/// <summary>
/// The experts' data plane: a stage reaches expert groups on other silos over their silo's socket, runs a group
/// hosted on its own silo in place, and gives exactly what grain calls give; a silo's data port answers a call for a
/// group it does not host with "gone" and drops a connection that sends a bad frame, serving on.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ExpertDataPlaneTests
{
    static readonly int[][] Prompts = [[5, 17, 300, 42], [9, 8, 7, 6, 5, 4, 3, 2, 1, 100, 200, 300, 400, 12, 13]];

    /// <summary>The transports of the expert-group calls made while <paramref name="run"/> runs (every silo is in this process).</summary>
    static async Task<Dictionary<string, int>> TransportsAsync(Func<Task> run)
    {
        var seen = new Dictionary<string, int>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Qwen3Cluster" && instrument.Name == "qwen3.expert_call.duration") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "transport") lock (seen) seen[(string)tag.Value!] = seen.GetValueOrDefault((string)tag.Value!) + 1;
        });
        listener.Start();
        await run();
        return seen;
    }

    [Theory]
    [InlineData("socket", "gateway,stage", "experts")]
    [InlineData("in-process", "gateway,stage,experts", "gateway")]
    [InlineData("grain", "gateway,stage", "experts")]
    public async Task ExpertCallsTakeTheirTransportAndEqualTheSingleProcessEngine(string transport, string rolesA, string rolesB)
    {
        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        var settings = transport == "grain" ? new Dictionary<string, string> { ["Qwen3:Silo:DataPort"] = "-1" } : null;
        await using var cluster = await ModelCluster.StartAsync(dir, [("silo-a", rolesA), ("silo-b", rolesB), ("silo-c", rolesB)],
            stages: 1, expertGroups: 4, settings: settings);
        await cluster.Replica().Warmup();
        using var local = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 128, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(local, new SchedulerOptions { NumBlocks = 128, BlockSize = 4, PrefixCaching = false }, []);

        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 12, Logprobs = 3, IgnoreEos = true };
        await cluster.GenerateAsync(Prompts[0], sampling); // the stage learns where its groups take calls
        var results = new List<Generated>();
        var transports = await TransportsAsync(async () =>
        {
            foreach (var prompt in Prompts) results.Add(await cluster.GenerateAsync(prompt, sampling));
        });
        Assert.Equal([transport], transports.Keys);
        Assert.True(transports[transport] >= Prompts.Length * 12, $"{transports[transport]} expert calls");

        for (int p = 0; p < Prompts.Length; p++)
        {
            var expected = await EngineRunner.RunAsync(engine, EngineRunner.Greedy(Prompts[p], 12, logprobs: 3));
            Assert.Equal(expected.Ids, results[p].Ids);
            for (int i = 0; i < expected.Ids.Length; i++)
            {
                Assert.InRange(results[p].Logprobs[i] - expected.Tokens[i].Logprob, -1e-4, 1e-4);
                Assert.Equal(expected.Tokens[i].Top.Select(t => t.Id), results[p].Top[i]);
            }
        }
    }

    [Fact]
    public async Task ADataPortAnswersWhatItHostsSaysGoneForTheRestAndDropsBadFrames()
    {
        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        await using var cluster = await ModelCluster.StartAsync(dir, [("silo-a", "gateway,stage"), ("silo-b", "experts"), ("silo-c", "experts")],
            stages: 1, expertGroups: 2);
        await cluster.Replica().Warmup();
        var key = new ExpertGroupKey(cluster.Model, 0, 0);
        var group = cluster.Client.GetExpertGroup(key);
        var endpoint = await group.DataPlane();
        Assert.NotNull(endpoint);
        Assert.Equal("silo-b", (await group.Host()).SiloName);

        // One token (hidden size 48) of sparse layer 0 routed to experts 0 and 3: group 0 holds experts [0, 4) of 8.
        var x = new TensorPayload("float32", [1, 48], System.Runtime.InteropServices.MemoryMarshal.AsBytes(
            Enumerable.Range(0, 48).Select(i => MathF.Sin(i)).ToArray().AsSpan()).ToArray());
        var ids2 = new TensorPayload("int64", [1, 2], TensorPayloads.FromIds([0, 3]).Data);
        var weights = new TensorPayload("float32", [1, 2], System.Runtime.InteropServices.MemoryMarshal.AsBytes(new[] { 0.75f, 0.25f }.AsSpan()).ToArray());
        int sparseLayer = 0;
        var expected = await group.Run(sparseLayer, x, ids2, weights);

        using (var socket = new Socket(SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(endpoint.Host, endpoint.Port);
            var frame = ExpertWire.WriteRequest([
                new ExpertWire.Call(key.ToString(), sparseLayer, "", x, ids2, weights),
                new ExpertWire.Call(new ExpertGroupKey(cluster.Model, 0, 1).ToString(), sparseLayer, "", x, ids2, weights),
                new ExpertWire.Call(key.ToString(), 999, "", x, ids2, weights),
            ]);
            ExpertWire.Send(socket, frame);
            frame.Return();
            var reply = ExpertWire.Receive(socket)!.Value;
            var replies = ExpertWire.ReadResponse(reply.Buffer.AsSpan(0, reply.Length));
            reply.Return();
            Assert.Equal(3, replies.Length);
            Assert.Equal(ExpertWire.Ok, replies[0].Status);
            Assert.Equal(expected.Data, replies[0].Output!.Data);
            Assert.Equal(expected.Shape, replies[0].Output!.Shape);
            // Group 1 lives on silo-c: silo-b's port says so instead of computing anything.
            Assert.Equal(ExpertWire.Gone, replies[1].Status);
            Assert.Contains("not hosted on silo silo-b", replies[1].Message);
            Assert.Equal(ExpertWire.Failed, replies[2].Status);
            Assert.Contains("layer 999", replies[2].Message);
        }

        // A frame that claims 2 GB, and one whose body is not a request: each connection is closed, the silo serves on.
        foreach (var bad in new[] { new byte[] { 0xff, 0xff, 0xff, 0x7f }, [5, 0, 0, 0, 9, 1, 2, 3, 4] })
        {
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(endpoint.Host, endpoint.Port);
            await socket.SendAsync(bad);
            var buffer = new byte[16];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal(0, await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token));
        }
        var after = await cluster.GenerateAsync(Prompts[0], new SamplingParams { Temperature = 0, MaxTokens = 4, IgnoreEos = true });
        Assert.Equal(4, after.Ids.Length);
    }
}
