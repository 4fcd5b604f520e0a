using Grpc.Core;
using Google.Protobuf;
using Grpc.Net.Client;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>Cancelled, disconnected and timed-out requests stop and give their KV blocks back (read from /metrics).</summary>
[Collection(ServerCollection.Name)]
public sealed class CancellationTests(ServerFixture fixture)
{
    async Task<double> WaitForBlocksAsync(double expected)
    {
        // Polled: freeing happens at the decode loop's next turn, which on a loaded machine can take a while.
        double used = -1;
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (DateTime.UtcNow < deadline)
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
        // Each request is cancelled after a random number of its tokens (0: as soon as it is sent), which is
        // mid-flight on a machine of any speed: 200 tokens are asked for and at most 6 read.
        async Task One(int i, int after)
        {
            var request = new GenerateRequest { TokenIds = new TokenIds(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 200, IgnoreEos = true } };
            request.TokenIds.Ids.AddRange(Enumerable.Range(0, 20 + i % 50).Select(j => 1000 + (i * 31 + j) % 90000));
            using var cts = new CancellationTokenSource();
            try
            {
                using var call = client.Generate(request, cancellationToken: cts.Token);
                int read = 0;
                if (after == 0) cts.Cancel();
                await foreach (var response in call.ResponseStream.ReadAllAsync(cts.Token))
                {
                    read += response.Tokens.Count;
                    if (read >= after) cts.Cancel();
                }
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
        for (int batch = 0; batch < 10; batch++)
            await Task.WhenAll(Enumerable.Range(batch * 20, 20).Select(i => One(i, random.Next(0, 7))));
        Assert.Equal(200, cancelled);
        Assert.Equal(baseline, await WaitForBlocksAsync(baseline));
        Assert.Equal(0, await fixture.Server.MetricAsync("qwen3_sequences_active"));
    }

    static GenerateRequest Endless() =>
        new() { Text = "Tell me everything.", Sampling = new SamplingParams { MaxTokens = 5000, IgnoreEos = true } };

    [Fact]
    public async Task ADeadlineEndsTheCallWithDeadlineExceededInItsTrailersAndFreesItsBlocks()
    {
        // Sessions other tests left behind hold their parked blocks: compare with what is in use now.
        double baseline = await fixture.Server.MetricAsync("qwen3_kv_blocks_used");
        // A plain HTTP/2 client that sends grpc-timeout but runs no timer of its own reads exactly what the server did.
        var message = Endless().ToByteArray();
        var frame = new byte[5 + message.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)message.Length);
        message.CopyTo(frame, 5);
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{fixture.Server.GrpcAddress}/qwen3cluster.v1.Inference/Generate")
        {
            Version = System.Net.HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(frame),
        };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        request.Headers.TryAddWithoutValidation("grpc-timeout", "2000m");
        request.Headers.TryAddWithoutValidation("authorization", $"Bearer {ServerFixture.KeyA}");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await (await response.Content.ReadAsStreamAsync()).CopyToAsync(Stream.Null);
        var headers = response.TrailingHeaders.Concat(response.Headers).ToDictionary(h => h.Key, h => string.Join(",", h.Value));
        Assert.True(headers.GetValueOrDefault("grpc-status") == "4", $"expected grpc-status 4 (DEADLINE_EXCEEDED), got: {string.Join("; ", headers)}");
        Assert.Contains("deadline", Uri.UnescapeDataString(headers.GetValueOrDefault("grpc-message", "")), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(baseline, await WaitForBlocksAsync(baseline));
        Assert.Equal(0, await fixture.Server.MetricAsync("qwen3_sequences_active"));
    }

    [Fact]
    public async Task TheGeneratedClientSeesItsDeadlineExceeded()
    {
        double baseline = await fixture.Server.MetricAsync("qwen3_kv_blocks_used");
        using var channel = fixture.Channel();
        var client = new Inference.InferenceClient(channel);
        var deadline = DateTime.UtcNow.AddSeconds(2);
        var call = client.Generate(Endless(), deadline: deadline);
        var error = await Assert.ThrowsAsync<RpcException>(async () => { await foreach (var _ in call.ResponseStream.ReadAllAsync()) { } });
        // Both ends track a deadline and gRPC calls its status best effort: when the client's own timer or gRPC's stream
        // reset wins the race with the server's trailers, Grpc.Net.Client can report the torn-down read as UNAVAILABLE
        // or CANCELLED "Error reading next message. ...". That client-side shape is accepted (the test above reads the
        // server's own answer without a client timer); an error status sent by the server is not.
        bool clientAbort = error.StatusCode is StatusCode.Unavailable or StatusCode.Cancelled
            && error.Status.Detail.StartsWith("Error reading next message.", StringComparison.Ordinal);
        Assert.True(error.StatusCode == StatusCode.DeadlineExceeded || clientAbort,
            $"{error}\nserver output:\n{Tail(fixture.Server.Process.Output)}");
        Assert.Equal(baseline, await WaitForBlocksAsync(baseline));
    }

    static string Tail(string text) => text.Length > 4000 ? text[^4000..] : text;
}
