using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using OpenTelemetry.Proto.Collector.Trace.V1;
using OpenTelemetry.Proto.Trace.V1;
using Qwen3Cluster.Protos.V1;
using Xunit.Abstractions;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>
/// The three-process cluster exports its traces over OTLP/HTTP to a receiver in the test: one request's span at the
/// gateway, the engine step that served it (linked to it), the stage span under the step and the expert-group
/// spans under the stage, on the expert silos, each parented across the silos.
/// </summary>
public sealed class TracingTests(ITestOutputHelper output)
{
    /// <summary>An OTLP/HTTP endpoint (POST /v1/traces, protobuf) that keeps every span with its silo's name.</summary>
    sealed class OtlpReceiver : IDisposable
    {
        readonly HttpListener _listener = new();
        readonly List<(string Silo, Span Span)> _spans = [];
        public int Port { get; } = Processes.FreePort();

        public OtlpReceiver()
        {
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            _listener.Start();
            _ = Task.Run(ServeAsync);
        }

        async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try { context = await _listener.GetContextAsync(); }
                catch (Exception) { return; }
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                if (context.Request.Url!.AbsolutePath == "/v1/traces")
                {
                    var request = ExportTraceServiceRequest.Parser.ParseFrom(body.ToArray());
                    lock (_spans)
                    {
                        foreach (var resource in request.ResourceSpans)
                        {
                            string silo = resource.Resource.Attributes.FirstOrDefault(a => a.Key == "service.instance.id")?.Value.StringValue ?? "";
                            foreach (var scope in resource.ScopeSpans) _spans.AddRange(scope.Spans.Select(s => (silo, s)));
                        }
                    }
                    context.Response.ContentType = "application/x-protobuf";
                    await context.Response.OutputStream.WriteAsync(new ExportTraceServiceResponse().ToByteArray());
                }
                context.Response.Close();
            }
        }

        public List<(string Silo, Span Span)> Spans()
        {
            lock (_spans) return [.. _spans];
        }

        public void Dispose() => _listener.Close();
    }

    static string Attribute(Span span, string key) =>
        span.Attributes.FirstOrDefault(a => a.Key == key)?.Value is { } v ? v.HasStringValue ? v.StringValue : v.IntValue.ToString() : "";

    /// <summary>Whether <paramref name="ancestor"/> is above <paramref name="span"/> in its trace.</summary>
    static bool Descends(Span span, Span ancestor, Dictionary<ByteString, Span> byId)
    {
        var current = span;
        while (!current.ParentSpanId.IsEmpty && byId.TryGetValue(current.ParentSpanId, out var parent))
        {
            if (parent.SpanId == ancestor.SpanId) return true;
            current = parent;
        }
        return false;
    }

    [Fact]
    public async Task ARequestsSpansReachFromTheGatewayThroughItsStepToTheExpertSilos()
    {
        using var receiver = new OtlpReceiver();
        string model = await TestModels.GetAsync("tiny-moe");
        var (script, ports) = await LocalClusterFixture.StartScriptAsync(model, "localhost", environment: new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{receiver.Port}",
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "600000",
            ["Qwen3__Telemetry__StepTraceRatio"] = "1",
        });
        await using var _ = script;
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{ports}");
        await LocalClusterFixture.WaitForExpertSilosAsync(channel);
        var request = new GenerateRequest { TokenIds = new TokenIds(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4 } };
        request.TokenIds.Ids.AddRange([17, 512, 3001, 99, 4000, 7]);
        await foreach (var _r in new Inference.InferenceClient(channel).Generate(request).ResponseStream.ReadAllAsync()) { }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        string missing = "";
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            var spans = receiver.Spans();
            var byId = spans.GroupBy(s => s.Span.SpanId).ToDictionary(g => g.Key, g => g.First().Span);
            var requestSpan = spans.FirstOrDefault(s => s.Span.Name == "qwen3.request" && Attribute(s.Span, "qwen3.generated_tokens") == "4");
            var steps = spans.Where(s => s.Span.Name == "qwen3.step" && requestSpan.Span is not null
                && s.Span.Links.Any(l => l.TraceId == requestSpan.Span.TraceId)).ToList();
            var stages = spans.Where(s => s.Span.Name == "qwen3.stage" && steps.Any(step => Descends(s.Span, step.Span, byId))).ToList();
            var experts = spans.Where(s => s.Span.Name == "qwen3.experts" && stages.Any(stage => Descends(s.Span, stage.Span, byId))).ToList();
            missing = requestSpan.Span is null ? "the request span" : steps.Count == 0 ? "a step linked to the request"
                : stages.Count == 0 ? "a stage span under a step" : experts.Count == 0 ? "an expert-group span under a stage" : "";
            if (missing.Length == 0 && requestSpan.Span is not null)
            {
                Assert.Equal("silo-a", requestSpan.Silo);
                Assert.Equal("6", Attribute(requestSpan.Span, "qwen3.prompt_tokens"));
                Assert.Equal("length", Attribute(requestSpan.Span, "qwen3.finish_reason"));
                Assert.All(steps, s => Assert.Equal("silo-a", s.Silo));
                Assert.All(experts, s => Assert.Contains(s.Silo, new[] { "silo-b", "silo-c" }));
                output.WriteLine($"request on {requestSpan.Silo}; {steps.Count} steps linked to it (batch size {Attribute(steps[0].Span, "qwen3.batch_size")}); " +
                    $"{stages.Count} stage spans on {string.Join(", ", stages.Select(s => s.Silo).Distinct())}; " +
                    $"{experts.Count} expert-group spans on {string.Join(", ", experts.Select(s => s.Silo).Distinct().Order())}");
                return;
            }
            await Task.Delay(250);
        }
        Assert.Fail($"no {missing} among {receiver.Spans().Count} spans: {string.Join(", ", receiver.Spans().Select(s => $"{s.Silo}:{s.Span.Name}").Distinct())}");
    }
}
