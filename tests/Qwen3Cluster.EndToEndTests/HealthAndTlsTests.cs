using System.Net.Http;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>Readiness through grpc.health.v1, server reflection, and TLS on both endpoints.</summary>
public sealed class HealthAndTlsTests
{
    static async Task<HealthCheckResponse.Types.ServingStatus> StatusAsync(GrpcChannel channel) =>
        (await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest())).Status;

    [Fact]
    public async Task HealthIsNotServingUntilEveryPlannedGrainCanBePlaced()
    {
        string model = await TestModels.GetAsync("tiny-moe");
        // A gateway-only silo: the model's stages have nowhere to go.
        await using var gateway = ServerProcess.Start(model, args: ["--roles", "gateway", "--name", "front"]);
        using var channel = GrpcChannel.ForAddress(gateway.GrpcAddress);
        var deadline = DateTime.UtcNow.AddMinutes(2);
        HealthCheckResponse.Types.ServingStatus status = default;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                status = await StatusAsync(channel);
                break;
            }
            catch (RpcException)
            {
                await Task.Delay(250);
            }
        }
        await Task.Delay(3000);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, await StatusAsync(channel));
        using (var http = new HttpClient())
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, (await http.GetAsync($"{gateway.HttpAddress}/healthz")).StatusCode);

        // A silo with the stage and experts roles joins: the model gets placed and loaded, and the gateway serves.
        await using var worker = ServerProcess.Start(model, args: ["--roles", "stage,experts", "--name", "worker"], primarySiloPort: gateway.SiloPort);
        await gateway.WaitUntilServingAsync();
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, await StatusAsync(channel));
        var request = new GenerateRequest { Text = "Hello", Sampling = new SamplingParams { MaxTokens = 3 } };
        int tokens = 0;
        await foreach (var r in new Inference.InferenceClient(channel).Generate(request).ResponseStream.ReadAllAsync()) tokens += r.Tokens.Count;
        Assert.Equal(3, tokens);
    }

    [Fact]
    public async Task ReflectionListsThePublicServices()
    {
        string model = await TestModels.GetAsync("tiny-moe");
        await using var server = ServerProcess.Start(model);
        await server.WaitUntilServingAsync();
        using var channel = GrpcChannel.ForAddress(server.GrpcAddress);
        using var call = new ServerReflection.ServerReflectionClient(channel).ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext());
        var names = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("qwen3cluster.v1.Inference", names);
        Assert.Contains("qwen3cluster.v1.Sessions", names);
        Assert.Contains("grpc.health.v1.Health", names);
    }

    [Fact]
    public async Task ACertificateServesBothEndpointsOverTls()
    {
        string model = await TestModels.GetAsync("tiny-moe");
        string dir = Path.Combine(Path.GetTempPath(), $"qwen3-tls-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(Path.Combine(dir, "cert.pem"), certificate.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "key.pem"), key.ExportPkcs8PrivateKeyPem());

        await using var server = ServerProcess.Start(model, new Dictionary<string, string>
        {
            ["Qwen3:Gateway:Tls:CertificatePath"] = Path.Combine(dir, "cert.pem"),
            ["Qwen3:Gateway:Tls:KeyPath"] = Path.Combine(dir, "key.pem"),
        }, tls: true);
        using var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert?.Thumbprint == certificate.Thumbprint,
        };
        await server.WaitUntilServingAsync(handler);
        using var channel = GrpcChannel.ForAddress(server.GrpcAddress, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var models = await new Inference.InferenceClient(channel).ListModelsAsync(new ListModelsRequest());
        Assert.Equal(Path.GetFileName(model), models.Models[0].Name);
        using var plain = new HttpClient();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetAsync($"{server.HttpAddress}/healthz"));
    }
}
