using System.CommandLine;
using Qwen3Cluster.Cli.Commands;

var root = new RootCommand("qwen3: a serving cluster for Qwen3 and Qwen3-MoE models")
{
    MakeModelCommand.Create(),
    GenerateCommand.Create(),
    TokenizeCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
