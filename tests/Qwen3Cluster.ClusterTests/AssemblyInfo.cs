// Each test class starts or shares a three-silo cluster; on a 2-core machine two at once would only race each other.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
