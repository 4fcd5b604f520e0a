using Grpc.Core;
using Grpc.Net.Client;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>Cancelled, disconnected and timed-out requests stop and give their KV blocks back (read from /metrics).</summary>
[Collection(ServerCollection.Name)]
public sealed class CancellationTests(ServerFixture fixture)
{
    async Task<double> WaitForBlocksAsync(double expected)
    {
        double used = -1;
        for (int i = 0; i < 100; i++)
        {
            used = await fixture.Server.MetricAsync("qwen3_kv_blocks_used");
            if (used == expected) break;
            await Task.Delay(100);
        }
        return used;
    }

    [Fact]
    public async Task TwoHundredRequestsCancelledAtRandomMomentsLeaveNoBlocksInUse()
    {
        double baseline = await fixture.Server.MetricAsync("qwen3_kv_blocks_used");
        using var channel = fixture.Channel();
        var client = new Inference.InferenceClient(channel);
        var random = new Random(1234);
        int cancelled = 0;
        async Task One(int i)
        {
            var request = new GenerateRequest { TokenIds = new TokenIds(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 200, IgnoreEos = true } };
            request.TokenIds.Ids.AddRange(Enumerable.Range(0, 20 + i % 50).Select(j => 1000 + (i * 31 + j) % 90000));
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(random.Next(0, 400)));
            try
            {
                using var call = client.Generate(request, cancellationToken: cts.Token);
                await foreach (var _ in call.ResponseStream.ReadAllAsync(cts.Token)) { }
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled)
            {
                Interlocked.Increment(ref cancelled);
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref cancelled);
            }
        }
        for (int batch = 0; batch < 10; batch++) await Task.WhenAll(Enumerable.Range(batch * 20, 20).Select(One));
        Assert.True(cancelled > 150, $"only {cancelled} of 200 were cancelled before finishing");
        Assert.Equal(baseline, await WaitForBlocksAsync(baseline));
        Assert.Equal(0, await fixture.Server.MetricAsync("qwen3_sequences_active"));
    }

    [Fact]
    public async Task ADeadlineEndsTheCallAndFreesItsBlocks()
    {
        // Sessions other tests left behind hold their parked blocks: compare with what is in use now.
        double baseline = await fixture.Server.MetricAsync("qwen3_kv_blocks_used");
        using var channel = fixture.Channel();
        var client = new Inference.InferenceClient(channel);
        var request = new GenerateRequest { Text = "Tell me everything.", Sampling = new SamplingParams { MaxTokens = 5000, IgnoreEos = true } };
        var call = client.Generate(request, deadline: DateTime.UtcNow.AddMilliseconds(500));
        var error = await Assert.ThrowsAsync<RpcException>(async () => { await foreach (var _ in call.ResponseStream.ReadAllAsync()) { } });
        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.Equal(baseline, await WaitForBlocksAsync(baseline));
    }
}
